"""The core needs none of the optional extras: with boto3 and botocore
unimportable, the package imports, a client makes a round trip to the
simulator (sync and async, chat and embeddings), and only s3_kit's own
transport asks for boto3, saying how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import asyncio
    import sys

    sys.modules["boto3"] = None  # `import boto3` now raises ImportError, as when absent
    sys.modules["botocore"] = None

    import ipfs_accelerate_py
    from ipfs_accelerate_py.api_backends import openai_api, s3_kit
    from ipfs_accelerate_py.simulator import Simulator
    from ipfs_accelerate_py.transport.boto3_transport import Boto3Transport

    with Simulator(host="127.0.0.1", port=0) as sim, openai_api(
        metadata={"openai_api_base": sim.url + "/v1", "openai_api_key": "sk-test"}
    ) as client:
        reply = client.chat("gpt-4o-mini", [{"role": "user", "content": "hi"}])
        print("chat", reply["choices"][0]["message"]["content"])
        vectors = client.embeddings("text-embedding-3-small", ["a", "b"])
        print("embeddings", len(vectors["data"]))
        reply = asyncio.run(client.achat("gpt-4o-mini", [{"role": "user", "content": "yo"}]))
        print("achat", reply["choices"][0]["message"]["content"])
    try:
        Boto3Transport()
    except ImportError as exc:
        print("s3", exc)
    print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")
                           and sys.modules[m] is not None))
    """
)


def test_the_core_runs_with_boto3_absent():
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "chat Simulated reply to: hi"
    assert lines[1] == "embeddings 2"
    assert lines[2] == "achat Simulated reply to: yo"
    assert lines[3].startswith("s3 ") and "pip install" in lines[3] and "boto3" in lines[3]
    assert lines[4] == "loaded []"

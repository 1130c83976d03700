"""The simulator's format framework: a throwaway format gets the whole machinery; proxy mode."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from ipfs_accelerate_py.simulator import Simulator, key_fingerprint
from ipfs_accelerate_py.simulator.formats import discover_formats
from ipfs_accelerate_py.simulator.routing import RouteConflict, Router
from ipfs_accelerate_py.simulator.wireformat import (
    NAMED_SSE,
    NDJSON,
    Prepared,
    RateState,
    Route,
    WireError,
    WireFormat,
    header_key,
    simple_error_body,
)

# -- a tiny format, defined here ---------------------------------------------------------


def _generate(payload, scenario, params):
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
        raise WireError(400, "'prompt' is required.", type="validation")
    words = payload["prompt"].split()
    model = payload.get("model", "toy-1")

    def body(rid, created):
        return {"id": rid, "model": model, "text": " ".join(words)}

    def chunks(rid, created):
        return [{"token": w, "done": False} for w in words] + [{"token": "", "done": True}]

    return Prepared(
        model=model,
        cost=len(words),
        body=body,
        stream=payload.get("stream", False),
        chunks=chunks,
        prompt_tokens=len(words),
        completion_tokens=len(words),
    )


def _chat(payload, scenario, params):
    model = params["model"]

    def chunks(rid, created):
        return [
            ("start", {"model": model}),
            {"type": "delta", "text": "hi"},
            {"type": "delta", "text": " there"},
            ("stop", {"reason": "end"}),
        ]

    return Prepared(
        model=model,
        cost=1,
        body=lambda rid, created: {"model": model},
        stream=True,
        chunks=chunks,
        framing=NAMED_SSE,
    )


def _models(payload, scenario, params):
    return Prepared(model=None, cost=0, body=lambda rid, created: {"models": list(scenario.models)})


def _toy_rate_headers(state: RateState) -> dict:
    return {"toy-requests-left": str(state.requests.remaining)} if state.requests else {}


TOY = WireFormat(
    name="toy",
    routes=(
        Route("POST", "/toy/generate", _generate),
        Route("POST", "/toy/models/{model}:chat", _chat),
        Route("GET", "/toy/models", _models),
    ),
    key=header_key("x-toy-key"),
    error_body=simple_error_body,
    rate_headers=_toy_rate_headers,
    overloaded_status=529,
    framing=NDJSON,
    malformed_body=b'{"text": "cu',
)


@pytest.fixture
async def toy():
    async with Simulator(extra_formats=[TOY]) as sim, aiohttp.ClientSession() as session:
        yield sim, session


async def send(session, sim, method, path, body=None, key=None):
    headers = {"x-toy-key": key} if key else {}
    async with session.request(method, sim.url + path, json=body, headers=headers) as response:
        return response.status, response.headers, await response.read()


# -- the machinery applies to the toy format ---------------------------------------------


async def test_key_header_and_error_body(toy):
    sim, session = toy
    sim.configure(valid_keys=["k-good"])
    missing = await send(session, sim, "POST", "/toy/generate", {"prompt": "a b"})
    wrong = await send(session, sim, "POST", "/toy/generate", {"prompt": "a b"}, key="k-bad")
    good = await send(session, sim, "POST", "/toy/generate", {"prompt": "a b"}, key="k-good")
    bearer = await session.post(
        sim.url + "/toy/generate", json={"prompt": "x"}, headers={"Authorization": "Bearer k-good"}
    )
    assert [missing[0], wrong[0], good[0], bearer.status] == [401, 401, 200, 401]
    assert json.loads(wrong[2]) == {
        "error": "Invalid API key.",
        "error_type": "authentication_error",
    }
    assert json.loads(good[2])["text"] == "a b"
    invalid = await send(session, sim, "POST", "/toy/generate", {"nope": 1}, key="k-good")
    assert (invalid[0], json.loads(invalid[2])) == (
        400,
        {"error": "'prompt' is required.", "error_type": "validation"},
    )
    counters = sim.counters()
    assert counters["by_key"] == {
        key_fingerprint("k-good"): 2,
        key_fingerprint("k-bad"): 1,
        "anonymous": 2,
    }  # the Bearer key is not this format's key
    assert counters["by_format"] == {"toy": 5}


async def test_faults_use_the_format(toy):
    sim, session = toy
    sim.configure(outage=True, retry_after=0.5)
    status, headers, body = await send(session, sim, "POST", "/toy/generate", {"prompt": "x"})
    assert status == 529 and headers["retry-after"] == "0.5"
    assert set(json.loads(body)) == {"error"}
    assert (await send(session, sim, "GET", "/toy/models"))[0] == 200  # GET is not targeted
    sim.configure(outage=False, fail_next=1, error_status=503, malformed_next=1)
    assert (await send(session, sim, "POST", "/toy/generate", {"prompt": "x"}))[0] == 503
    status, _, body = await send(session, sim, "POST", "/toy/generate", {"prompt": "x"})
    assert (status, body) == (200, b'{"text": "cu')
    sim.configure(rate_limits={"rpm": 1})
    first = await send(session, sim, "POST", "/toy/generate", {"prompt": "x"}, key="k")
    second = await send(session, sim, "POST", "/toy/generate", {"prompt": "x"}, key="k")
    assert (first[0], second[0]) == (200, 429)
    assert first[1]["toy-requests-left"] == "0" and "x-ratelimit-limit-requests" not in first[1]
    assert "error" in json.loads(second[2])
    faults = sim.counters()["faults"]
    assert (faults["outage"], faults["error"], faults["malformed"]) == (1, 1, 1)


async def test_script_and_405_and_404(toy):
    sim, session = toy
    sim.script([{"status": 502}], path="/toy/generate")
    status, _, body = await send(session, sim, "POST", "/toy/generate", {"prompt": "x"})
    assert status == 502 and json.loads(body) == {"error": "Scripted error (status 502)."}
    status, headers, body = await send(session, sim, "GET", "/toy/generate")
    assert status == 405 and headers["Allow"] == "POST" and "error" in json.loads(body)
    status, _, body = await send(session, sim, "POST", "/toy/nowhere", {"prompt": "x"})
    assert status == 404 and "message" in json.loads(body)["error"]  # the default format's 404


async def test_ndjson_stream_and_its_cut(toy):
    sim, session = toy
    async with session.post(
        sim.url + "/toy/generate", json={"prompt": "one two three", "stream": True}
    ) as response:
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await response.read()).splitlines()]
    assert [line["token"] for line in lines] == ["one", "two", "three", ""]
    sim.configure(stream_cut_after=2)
    received = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(
            sim.url + "/toy/generate", json={"prompt": "one two three", "stream": True}
        ) as response:
            async for line in response.content:
                received.append(json.loads(line))
    assert [r["token"] for r in received] == ["one", "two"]
    await _eventually(lambda: sim.counters()["in_flight"] == 0)
    counters = sim.counters()
    assert counters["streams"] == {"started": 2, "finished": 1}
    assert counters["faults"]["stream_cut"] == 1
    assert counters["tokens"]["prompt"] == 3  # only the finished stream counts


async def test_named_event_stream_with_path_param_and_malformed_event(toy):
    sim, session = toy
    sim.configure(stream_malformed_after=1)
    async with session.post(sim.url + "/toy/models/big%20one:chat", json={}) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = (await response.read()).decode()
    blocks = [b for b in text.split("\n\n") if b]
    names = [b.split("\n")[0] for b in blocks]
    assert names == [
        "event: start",
        "event: content_block_delta",
        "event: delta",
        "event: delta",
        "event: stop",
    ]
    assert json.loads(blocks[0].split("\n", 1)[1][len("data: ") :]) == {"model": "big one"}
    with pytest.raises(ValueError):
        json.loads(blocks[1].split("\n", 1)[1][len("data: ") :])
    assert sim.counters()["by_model"] == {"big one": 1}


# -- routing and discovery ----------------------------------------------------------------


def _parse(payload, scenario, params):
    return Prepared(model=None, cost=0, body=lambda rid, created: dict(params))


def test_route_conflicts_are_refused_at_start_up():
    clash = WireFormat(name="clash", routes=(Route("POST", "/v1/chat/completions", _parse),))
    with pytest.raises(RouteConflict, match="'openai' and 'clash'"):
        Simulator(extra_formats=[clash])
    one = WireFormat(name="a", routes=(Route("POST", "/m/{x}:go", _parse),))
    two = WireFormat(name="b", routes=(Route("POST", "/m/{y}:go", _parse),))
    with pytest.raises(RouteConflict, match="POST /m/{y}:go"):
        Router([one, two])
    with pytest.raises(RouteConflict, match="named"):
        Router([one, WireFormat(name="a", routes=())])


def test_router_prefers_literal_routes_and_reports_methods():
    fmt = WireFormat(
        name="r",
        routes=(
            Route("GET", "/v1/models/{model+}", _parse),
            Route("POST", "/v1/models/{model}:predict", _parse),
            Route("GET", "/v1/models/special", _parse),
        ),
    )
    router = Router([fmt])
    assert router.resolve("POST", "/v1/models/m1:predict")[2] == {"model": "m1"}
    assert router.resolve("GET", "/v1/models/org/name")[2] == {"model": "org/name"}
    assert router.resolve("GET", "/v1/models/special")[1].pattern == "/v1/models/special"
    assert router.resolve("DELETE", "/v1/models/m1:predict")[1:] == (None, ["GET", "POST"])
    assert router.resolve("GET", "/elsewhere") is None
    with pytest.raises(ValueError):
        Route("GET", "/bad/{a}{b}", _parse)


def test_discovery_finds_the_openai_format():
    names = [fmt.name for fmt in discover_formats()]
    assert "openai" in names and len(names) == len(set(names))


# -- proxy mode ---------------------------------------------------------------------------

SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc"
)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    if request.method == "HEAD":
        return web.Response(status=200, headers={"Content-Length": "1234", "ETag": '"e"'})
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.path_qs,
            "host": request.headers.get("Host"),
            "auth": request.headers.get("Authorization"),
            "amz": request.headers.get("x-amz-date"),
            "body": body.decode(),
        },
        status=201,
        headers={"x-upstream": "yes"},
    )


@pytest.fixture
async def echo_upstream():
    """An aiohttp server echoing each request as JSON (201); its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def proxied(echo_upstream):
    async with Simulator({"upstream": echo_upstream}) as sim:
        async with aiohttp.ClientSession() as session:
            yield sim, session, echo_upstream


async def test_proxy_forwards_verbatim_and_counts(proxied):
    sim, session, upstream = proxied
    sim.configure(forward_credentials=True)
    headers = {"Authorization": SIGV4, "x-amz-date": "20240101T000000Z", "Host": "s3.local"}
    async with session.put(
        sim.url + "/bucket/some%20key?partNumber=2&x=y", data=b"payload", headers=headers
    ) as response:
        assert response.status == 201 and response.headers["x-upstream"] == "yes"
        echoed = await response.json()
    assert echoed == {
        "method": "PUT",
        "path_qs": "/bucket/some%20key?partNumber=2&x=y",
        "host": "s3.local",
        "auth": SIGV4,
        "amz": "20240101T000000Z",
        "body": "payload",
    }
    async with session.head(sim.url + "/bucket/k") as response:
        assert response.status == 200 and response.headers["Content-Length"] == "1234"
    async with session.get(sim.url + "/v1/models") as response:  # claimed: not forwarded
        assert response.status == 200 and "data" in await response.json()
    counters = sim.counters()
    assert counters["by_key"] == {key_fingerprint("AKIDEXAMPLE"): 1, "anonymous": 2}
    assert counters["by_format"] == {"proxy": 2, "openai": 1}
    assert counters["by_status"] == {"201": 1, "200": 2}


async def test_proxy_injects_faults_in_front(proxied):
    sim, session, upstream = proxied
    sim.configure(outage=True)
    async with session.get(sim.url + "/bucket/k", headers={"Authorization": SIGV4}) as response:
        assert response.status == 503
        assert response.headers["Content-Type"].startswith("application/xml")
        text = await response.text()
    assert "<Code>SlowDown</Code>" in text and text.startswith("<?xml")
    sim.configure(
        outage=False,
        fail_next=1,
        error_status=500,
        proxy_error_body="{code}|{status}|{message}",
        proxy_error_content_type="text/plain",
    )
    async with session.get(sim.url + "/bucket/k") as response:
        assert response.status == 500 and response.headers["Content-Type"] == "text/plain"
        assert (await response.text()).startswith("InternalError|500|Simulated server error")
    sim.configure(latency=30)  # held in front of the upstream: the client's 0.1 s runs out
    with pytest.raises(asyncio.TimeoutError):
        await session.get(sim.url + "/bucket/k", timeout=aiohttp.ClientTimeout(total=0.1))
    await _eventually(lambda: sim.counters()["client_disconnects"] == 1)
    sim.configure(latency=0, drop_next=1)
    with pytest.raises(aiohttp.ClientConnectionError):  # POST: aiohttp retries a dropped GET
        await session.post(sim.url + "/bucket/k", data=b"x")
    counters = sim.counters()
    assert counters["faults"]["outage"] == 1 and counters["faults"]["error"] == 1
    assert counters["faults"]["drop"] == 1
    assert counters["by_format"] == {"proxy": 4}
    assert counters["by_key"][key_fingerprint("AKIDEXAMPLE")] == 1


async def test_proxy_script_unreachable_upstream_and_no_upstream(proxied):
    sim, session, upstream = proxied
    sim.script(
        [
            {
                "status": 503,
                "body": "<Error><Code>SlowDown</Code></Error>",
                "headers": {"Content-Type": "application/xml"},
            },
            {"status": 200},
        ]
    )
    async with session.post(sim.url + "/bucket/k?uploads") as response:
        assert response.status == 503 and "SlowDown" in await response.text()
    async with session.post(sim.url + "/bucket/k?uploads") as response:
        assert response.status == 201  # a normal script entry is forwarded
    sim.configure(upstream="http://127.0.0.1:9")
    async with session.get(sim.url + "/bucket/k") as response:
        assert response.status == 502 and "<Code>BadGateway</Code>" in await response.text()
    sim.configure(upstream=None)
    async with session.get(sim.url + "/bucket/k") as response:
        assert response.status == 404 and "error" in await response.json()


async def _eventually(predicate, timeout=2.0):
    """Wait (at most ``timeout``: else TimeoutError) until ``predicate()`` holds."""

    async def reached() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reached(), timeout)


async def test_proxy_401_is_s3s_invalid_access_key_id(proxied):
    sim, session, upstream = proxied
    sim.configure(valid_keys=["AKIDGOOD"])
    async with session.get(sim.url + "/bucket/k", headers={"Authorization": SIGV4}) as response:
        assert response.status == 401
        assert response.headers["Content-Type"].startswith("application/xml")
        text = await response.text()
    assert "<Code>InvalidAccessKeyId</Code>" in text and "invalid_api_key" not in text
    async with session.get(sim.url + "/bucket/k") as response:  # no key at all
        assert response.status == 401 and "<Code>AccessDenied</Code>" in await response.text()


async def test_models_listing_takes_an_x_api_key_as_well_as_a_bearer_key(simulator):
    simulator.configure(valid_keys=["k-good"])
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for headers in (
            {"x-api-key": "k-good"},
            {"Authorization": "Bearer k-good"},
            {"x-api-key": "k-bad"},
            {},
        ):
            async with session.get(simulator.base_url + "/models", headers=headers) as response:
                statuses.append(response.status)
        async with session.get(
            simulator.base_url + "/models/gpt-4o-mini", headers={"x-api-key": "k-good"}
        ) as response:
            statuses.append(response.status)
        async with session.post(
            simulator.base_url + "/chat/completions", json=chat, headers={"x-api-key": "k-good"}
        ) as response:
            statuses.append(response.status)  # chat stays Bearer-only, as OpenAI's
    assert statuses == [200, 200, 401, 401, 200, 401]
    assert simulator.counters()["by_key"][key_fingerprint("k-good")] == 3


# -- request bodies: Expect: 100-continue, and bodies an early answer leaves unread --------

WAIT = 5.0  # a bound on a wait that should end at once; never reached when the test passes
TOY_BODY = b'{"prompt": "hello there"}'


@pytest.fixture
async def everything(echo_upstream):
    """A simulator with every format, the toy one and an upstream (proxy mode)."""
    async with Simulator({"upstream": echo_upstream}, extra_formats=[TOY]) as sim:
        yield sim


def _head(method, path, length, *, expect=False, headers=()):
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: sim",
        f"Content-Length: {length}",
        "Content-Type: application/json",
    ]
    if expect:
        lines.append("Expect: 100-continue")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _read_answer(reader):
    """One final response off a raw connection: (status, lower-cased headers, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), WAIT)
    return int(status_line.split()[1]), headers, body


async def _closed(reader):
    """True when the server closes the connection without sending anything more."""
    return await asyncio.wait_for(reader.read(), WAIT) == b""


async def _late_body_is_never_a_request(reader, writer, method, path, body):
    """Send the held-back body late, then another request: the server must discard the body
    and close (``Connection: close``), never parse it nor answer the next request."""
    writer.write(body + _head(method, path, len(body)) + body)
    return await _closed(reader)


BODY_ROUTES = [  # path, body, what a 2xx answer holds
    ("/toy/generate", TOY_BODY, b'"text":"hello there"'),
    (
        "/v1/chat/completions",
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
        b'"chat.completion"',
    ),
    ("/bucket/some-key", b"raw object bytes \x00\x01", b'"body": "raw object bytes'),
]


@pytest.mark.parametrize("path, body, answer", BODY_ROUTES, ids=["toy", "openai", "proxy"])
async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    everything, path, body, answer
):
    sim = everything
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        for _ in range(2):  # the same keep-alive connection, twice
            writer.write(
                _head("PUT" if path.startswith("/bucket") else "POST", path, len(body), expect=True)
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any body byte was sent
            writer.write(body)
            status, headers, got = await _read_answer(reader)
            assert status in (200, 201) and answer in got
    finally:
        writer.close()
    assert sim.counters()["requests_total"] == 2


EARLY_ANSWERS = {  # how the simulator answers before reading a body -> the status it sends
    "outage": ({"outage": True}, None, {"/toy/generate": 529}),
    "unknown key": ({"valid_keys": ["k-good"]}, None, {}),
    "scripted status": ({}, [{"status": 503}], {}),
    "scripted body": ({}, [{"status": 503, "body": "<Error/>"}], {}),
}
EARLY_STATUS = {"outage": 503, "unknown key": 401, "scripted status": 503, "scripted body": 503}


def _early(sim, case):
    fields, script, statuses = EARLY_ANSWERS[case]
    if fields:
        sim.configure(fields)
    if script:
        sim.script(script)
    return statuses


@pytest.mark.parametrize("case", list(EARLY_ANSWERS))
@pytest.mark.parametrize("path, body, answer", BODY_ROUTES, ids=["toy", "openai", "proxy"])
async def test_an_early_answer_to_a_client_holding_its_body_back_closes_the_connection(
    everything, case, path, body, answer
):
    sim = everything
    statuses = _early(sim, case)
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(_head("POST", path, len(body), expect=True))
        status, headers, _ = await _read_answer(reader)  # a final status, no 100 Continue
        assert status == statuses.get(path, EARLY_STATUS[case])
        assert headers.get("connection", "").lower() == "close"
        assert await _late_body_is_never_a_request(reader, writer, "POST", path, body)
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(EARLY_ANSWERS))
@pytest.mark.parametrize("path, body, answer", BODY_ROUTES, ids=["toy", "openai", "proxy"])
async def test_an_early_answer_discards_a_small_body_sent_with_the_request(
    everything, case, path, body, answer
):
    sim = everything
    statuses = _early(sim, case)
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(_head("POST", path, len(body)) + body)
        status, headers, _ = await _read_answer(reader)
        assert status == statuses.get(path, EARLY_STATUS[case])
        assert headers.get("connection", "").lower() != "close"
        sim.reset()  # back to normal: the next request on this connection must be served
        writer.write(_head("POST", path, len(body)) + body)
        status, _, got = await _read_answer(reader)
        assert status in (200, 201) and answer in got
    finally:
        writer.close()
    assert sim.counters()["by_status"] in ({"200": 1}, {"201": 1})  # no 400 from body bytes


async def test_an_early_answer_closes_the_connection_when_the_body_is_too_big_to_discard(
    everything,
):
    sim = everything
    sim.configure(outage=True)
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(_head("PUT", "/bucket/big", 64 << 20) + b"x" * 65536)
        status, headers, body = await _read_answer(reader)
        assert status == 503 and b"<Code>SlowDown</Code>" in body
        assert headers.get("connection", "").lower() == "close"
    finally:
        writer.close()


@pytest.mark.parametrize(
    "method, path, status", [("PUT", "/toy/models", 405), ("POST", "/nowhere/at/all", 404)]
)
async def test_refusals_before_any_route_reads_a_body_close_on_expect(
    everything, method, path, status
):
    sim = everything
    sim.configure(upstream=None)
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(_head(method, path, len(TOY_BODY), expect=True))
        answer, headers, _ = await _read_answer(reader)
        assert answer == status and headers.get("connection", "").lower() == "close"
        assert await _late_body_is_never_a_request(reader, writer, method, path, TOY_BODY)
    finally:
        writer.close()


async def test_admin_posts_answer_expect_100_continue(everything):
    sim = everything
    body = b'{"latency": 0}'
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(
            _head(
                "POST",
                "/_admin/config",
                len(body),
                expect=True,
                headers=[("Authorization", sim.admin_headers["Authorization"])],
            )
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        status, _, _ = await _read_answer(reader)
        assert status == 200
    finally:
        writer.close()

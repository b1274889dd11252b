"""What each lab host says: a plain ESMTP dialogue and the deliberate failures of behaviours.py
(scanner.lab.population).

Every reply waits `host.latency_ms` first. Hosts that never send a complete line (tarpit, trickle,
endless_reply, long_line, garbage) keep reading the client until it leaves, so a scan that gives
up frees the connection at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import struct
from collections.abc import Awaitable, Callable

from scanner.lab.population.behaviours import Behaviour
from scanner.lab.servers.smtp_session import Session, drain_input

HANDSHAKE_TIMEOUT_S = 30.0
REJECT_LINGER_S = 5.0  # how long a 421/554 greeter waits for QUIT before hanging up
TRICKLE_INTERVAL_S = 1.0
LONG_LINE_BYTES = 10 * 1024 * 1024
_CHUNK = 64 * 1024

B = Behaviour
#: STARTTLS is neither listed nor accepted (masked: a middlebox rewrote it to XXXXXXXA).
_NO_STARTTLS = frozenset({B.NO_STARTTLS, B.MASKED, B.EHLO_REJECTED, B.ALL_421})
#: Raw TLS records: fatal alert handshake_failure (40) and internal_error (80), TLS 1.2 framing.
_ALERTS = {B.HANDSHAKE_FAILS: bytes.fromhex("15030300020228"),
           B.TLS_ALERT: bytes.fromhex("15030300020250")}


async def converse(s: Session) -> None:
    """Play the host's behaviour to one connected client, until either side ends it."""
    if s.paused and not await _hold_while_paused(s):
        return
    behaviour = s.host.behaviour
    silent = _SILENT.get(behaviour)
    if silent is not None:
        await _while_connected(s, silent(s))
    elif behaviour in (B.GREETING_421, B.GREETING_554):
        await _reject(s)
    elif behaviour is not B.ACCEPT_CLOSE:
        await _greet(s)
        await _dialogue(s)


async def _greet(s: Session) -> None:
    behaviour, banner = s.host.behaviour, s.host.banner
    if behaviour is B.GREET_PAUSE:
        await asyncio.sleep(s.greet_pause_s)
    if behaviour is B.MULTILINE_GREETING:
        await s.reply(220, banner, "This is a simulated mail server of the STARTTLS survey lab.",
                      "It accepts no mail.", f"{s.name} ready")
    elif behaviour is B.NUL_BYTES:
        await s.send(b"220 " + s.name.encode() + b"\x00\x00 ESMTP\r\n")
    elif behaviour is B.DATA_BEFORE_GREETING:
        await s.send(b"hello there\r\n220 " + banner.encode() + b"\r\n")
    else:
        await s.reply(220, banner)


async def _dialogue(s: Session) -> None:
    """Answer commands until QUIT, EOF or a behaviour that hangs up."""
    while (line := await s.read_command()) is not None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if s.host.behaviour is B.ALL_421:
            await s.reply(421, "4.3.2 Service shutting down")
            return
        if verb == "QUIT":
            await s.reply(221, "2.0.0 Bye")
            return
        if verb == "STARTTLS":
            if not await _starttls(s):
                return
            continue
        await _answer(s, verb, argument.strip())


async def _answer(s: Session, verb: str, argument: str) -> None:
    behaviour = s.host.behaviour
    if verb == "EHLO" and behaviour is B.EHLO_REJECTED:
        await s.reply(502, "5.5.2 Error: command not recognized")
    elif verb in ("EHLO", "HELO") and not argument:
        await s.reply(501, f"5.5.4 Syntax: {verb} hostname")
    elif verb == "EHLO":
        await s.reply(250, *_ehlo_lines(s))
    elif verb == "HELO":
        await s.reply(250, s.name)
    elif verb in ("NOOP", "RSET"):
        await s.reply(250, "2.0.0 Ok")
    elif verb == "MAIL":
        await s.reply(550, "5.7.1 This lab host accepts no mail")
    elif verb == "RCPT":
        await s.reply(503, "5.5.1 Error: need MAIL command")
    elif verb == "DATA":
        await s.reply(503, "5.5.1 Error: need RCPT command")
    elif not verb:
        await s.reply(500, "5.5.2 Error: bad syntax")
    else:
        await s.reply(502, "5.5.2 Error: command not recognized")


def _ehlo_lines(s: Session) -> list[str]:
    lines = [s.name, "PIPELINING", "SIZE 10240000"]
    if not s.tls:
        if s.host.behaviour is B.MASKED or (s.stripped and s.host.behaviour not in _NO_STARTTLS):
            lines.append("XXXXXXXA")
        elif s.host.behaviour not in _NO_STARTTLS:
            lines.append("STARTTLS")
    lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"]
    return lines


async def _starttls(s: Session) -> bool:
    """Answer STARTTLS and do (or sabotage) the handshake; False when the connection ends."""
    behaviour = s.host.behaviour
    if s.tls:
        await s.reply(554, "5.5.1 Error: TLS already active")
        return True
    if behaviour in _NO_STARTTLS:
        await s.reply(502, "5.5.1 Error: command not implemented")
        return True
    if s.stripped:  # the middlebox rewrote the command: the server never saw STARTTLS
        await s.reply(502, "5.5.1 Unrecognized command")
        return True
    if behaviour is B.STARTTLS_454:
        await s.reply(454, "4.7.0 TLS not available due to local problem")
        return True
    context = None if behaviour in _HANDSHAKE_SABOTAGE else s.pki.server_context(s.host)
    # Nothing may yield between the 220 and start_tls: a ClientHello read meanwhile by the
    # plaintext stream would be lost to TLS.
    await s.reply(220, "2.0.0 Ready to start TLS")
    if context is None:
        await _HANDSHAKE_SABOTAGE[behaviour](s)
        return False
    await s.writer.start_tls(context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
    s.tls = True
    return True


async def _read_client_hello(s: Session) -> None:
    header = await s.reader.readexactly(5)
    if header[0] == 0x16:  # a handshake record: take all of it
        await s.reader.readexactly(int.from_bytes(header[3:5], "big"))


async def _send_alert(s: Session) -> None:
    await _read_client_hello(s)
    s.writer.write(_ALERTS[s.host.behaviour])
    await s.writer.drain()


async def _reset(s: Session) -> None:
    await _read_client_hello(s)
    sock = s.writer.get_extra_info("socket")
    # SO_LINGER with a zero timeout turns close() into a TCP RST.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.writer.transport.abort()


async def _plaintext_reply(s: Session) -> None:
    # After the ClientHello, as a server that took it for a command would: sent at once, the
    # line could sit unread in the client's plaintext buffer and the handshake would just hang.
    await _read_client_hello(s)
    await s.send(b"220 ready\r\n")
    await drain_input(s.reader)


_HANDSHAKE_SABOTAGE: dict[Behaviour, Callable[[Session], Awaitable[None]]] = {
    B.HANDSHAKE_FAILS: _send_alert, B.TLS_ALERT: _send_alert,
    B.RESET_MID_HANDSHAKE: _reset, B.PLAINTEXT_AFTER_STARTTLS: _plaintext_reply,
}


async def _reject(s: Session) -> None:
    """A 421/554 greeting, then only QUIT is welcome (RFC 5321 §3.1), for a short while."""
    code = 421 if s.host.behaviour is B.GREETING_421 else 554
    if code == 421:
        await s.reply(421, f"4.3.2 {s.name} Service not available, closing transmission channel")
    else:
        await s.reply(554, f"5.7.1 {s.name} Access denied: no SMTP service here")
    try:
        async with asyncio.timeout(REJECT_LINGER_S):
            while (line := await s.read_command()) is not None:
                if line.partition(" ")[0].upper() == "QUIT":
                    await s.reply(221, "2.0.0 Bye")
                    return
                if code == 421:
                    await s.reply(421, "4.3.2 Service not available, closing transmission channel")
                    return
                await s.reply(503, "5.5.1 Error: no valid session, send QUIT")
    except TimeoutError:
        pass


async def _while_connected(s: Session, job: Awaitable[None]) -> None:
    """Run `job` (the server's talking) until the client leaves; its own end is not the end."""
    task = asyncio.ensure_future(job)
    try:
        await s.discard_commands()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _hold_while_paused(s: Session) -> bool:
    """Say nothing until the fleet resumes (True) or the client leaves (False)."""
    resumed = asyncio.ensure_future(s.running.wait())
    gone = asyncio.ensure_future(drain_input(s.reader))
    try:
        await asyncio.wait((resumed, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (resumed, gone):
            task.cancel()
        await asyncio.gather(resumed, gone, return_exceptions=True)
    return not gone.done() or gone.cancelled()


async def _tarpit(s: Session) -> None:
    await asyncio.Event().wait()  # never: _while_connected cancels it when the client leaves


async def _trickle(s: Session) -> None:
    line = itertools.chain(f"220 {s.host.banner} ".encode(), itertools.repeat(ord(".")))
    await s.delay()
    for byte in line:
        await s.write(bytes((byte,)))
        await asyncio.sleep(TRICKLE_INTERVAL_S)


async def _endless(s: Session) -> None:
    block = b"".join(b"220-%s endless reply, line %d\r\n" % (s.name.encode(), i)
                     for i in range(400))
    await s.delay()
    while True:
        await s.write(block)
        await asyncio.sleep(0)  # a fast reader never fills the buffer: let others run


async def _long_line(s: Session) -> None:
    await s.delay()
    await s.write(b"220 ")
    chunk = b"x" * _CHUNK
    for _ in range(LONG_LINE_BYTES // _CHUNK):
        await s.write(chunk)
        await asyncio.sleep(0)
    await s.write(b"\r\n")


async def _garbage(s: Session) -> None:
    # Starts with 0xFF (never valid UTF-8, not a digit); the CRLF at the end lets a line reader
    # see one complete non-reply line rather than time out.
    noise = random.Random(s.host.ip).randbytes(2048).replace(b"\r", b"").replace(b"\n", b"")
    await s.send(b"\xff" + noise + b"\r\n")


_SILENT: dict[Behaviour, Callable[[Session], Awaitable[None]]] = {
    B.TARPIT: _tarpit, B.TRICKLE: _trickle, B.ENDLESS_REPLY: _endless,
    B.LONG_LINE: _long_line, B.GARBAGE: _garbage,
}

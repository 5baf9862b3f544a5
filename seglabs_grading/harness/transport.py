"""How the harness reaches the kernel: silent requests on the Jupyter shell channel of the kernel that runs.

Each request is one ``execute_request`` (``silent``, no history) of a fixed one-line call into
:func:`seglabs_grading.harness.kernel_side.serve` with a fresh nonce; the JSON request is the answer to the
``input_request`` that call makes (stdin channel), so IPython never transforms or compiles it. The reply is the
first ``display_data`` of MIME type :data:`~.protocol.MIME` whose parent is that request and whose nonce
matches; everything else the kernel publishes meanwhile (the student's prints, replies to requests never
asked) is ignored. The harness uses its own blocking client on the kernel's connection file, so it works with
any kernel manager (plain, sandboxed, ipc transport) while nbclient's client stays untouched.
"""

from __future__ import annotations

import queue
import secrets
import time
from collections.abc import Callable
from typing import Any

from seglabs_grading.harness import protocol
from seglabs_grading.harness.errors import CallTimeout, KernelDied

INTERRUPT_GRACE_S = 10.0  # after a time limit: how long the kernel may take to come back from the interrupt
SERVE = "__import__('seglabs_grading.harness.kernel_side', fromlist=['serve']).serve"


class JupyterTransport:
    """Requests and replies over a running kernel's shell and IOPub channels.

    ``interrupt`` interrupts the kernel (the kernel manager's ``interrupt_kernel``) and ``is_alive`` says whether
    its process still runs; both come from whoever started the kernel.
    """

    def __init__(self, client: Any, interrupt: Callable[[], None], is_alive: Callable[[], bool]):
        self.client = client
        self.interrupt = interrupt
        self.is_alive = is_alive
        self.broken: str | None = None  # set when the kernel can no longer answer

    @classmethod
    def connect(
        cls, connection_info: dict[str, Any], interrupt: Callable[[], None], is_alive: Callable[[], bool]
    ) -> JupyterTransport:
        """A transport with its own client on the kernel described by ``connection_info``."""
        import zmq
        from jupyter_client import BlockingKernelClient

        # No zmq.MAXMSGSIZE here: past it zmq drops the whole IOPub connection, and the replies that follow
        # a large student output (print 100 MB, then a call) were lost. nbclient's own client receives the same
        # messages uncapped in this process; a reply's size is checked by protocol.loads.
        context = zmq.Context()
        client = BlockingKernelClient(context=context)
        client.load_connection_info(connection_info)
        client.start_channels(
            hb=False
        )  # liveness comes from the kernel manager (a young heartbeat reads as dead)
        client.wait_for_ready(timeout=60)
        return cls(client, interrupt, is_alive)

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.client.context.term()

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; return the kernel's reply (parsed, not yet decoded).

        Raises :class:`~.errors.CallTimeout` past ``timeout`` (the kernel is interrupted), :class:`KernelDied` when the kernel
        exits, :class:`~.protocol.ProtocolError` for a reply that is not one.
        """
        if self.broken:
            raise KernelDied(self.broken) if "exited" in self.broken else CallTimeout(self.broken)
        nonce = secrets.token_hex(16)
        payload = protocol.dumps(message)
        code = f"{SERVE}(globals(), {nonce!r})"  # the request follows on stdin: IPython never parses it
        msg_id = self.client.execute(
            code, silent=True, store_history=False, allow_stdin=True, stop_on_error=False
        )
        reply, idle = self._collect(msg_id, nonce, time.monotonic() + timeout, payload)
        if not idle:
            self._recover(msg_id)
            raise CallTimeout(f"the call did not finish within {timeout:g} s")
        self._drain_shell(msg_id)
        if reply is None:
            raise protocol.ProtocolError("the kernel sent no reply (its harness side was replaced or broken)")
        return reply

    def _answer_input(self, msg_id: str, payload: str | None) -> str | None:
        """Send ``payload`` when the kernel asks for input for this request; what is left to send."""
        try:
            msg = self.client.get_stdin_msg(timeout=0.002)
        except queue.Empty:
            return payload
        if msg.get("msg_type") == "input_request" and msg.get("parent_header", {}).get("msg_id") == msg_id:
            self.client.input(payload if payload is not None else "")  # asked twice: an empty answer
            return None
        return payload

    def _collect(
        self, msg_id: str, nonce: str, deadline: float, payload: str | None = None
    ) -> tuple[dict[str, Any] | None, bool]:
        """Answer the request's input_request with ``payload``; read IOPub until the request's ``idle`` status or
        the deadline: (reply or None, idle seen)."""
        reply = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return reply, False
            payload = self._answer_input(msg_id, payload)
            try:
                msg = self.client.get_iopub_msg(timeout=min(remaining, 0.02 if payload is not None else 0.5))
            except queue.Empty:
                if not self.is_alive():
                    self.broken = "the kernel exited during a call"
                    raise KernelDied(self.broken) from None
                continue
            if not isinstance(msg, dict) or msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content") or {}
            if kind == "status" and content.get("execution_state") == "idle":
                return reply, True
            if kind == "display_data" and reply is None:
                reply = _parse_reply(content, nonce)

    def _recover(self, msg_id: str) -> None:
        """Interrupt a call past its time limit and wait for the kernel to come back."""
        try:
            self.interrupt()
        except Exception as err:  # noqa: BLE001
            self.broken = f"the kernel could not be interrupted after a time limit ({err})"
            return
        try:
            _, idle = self._collect(msg_id, "", time.monotonic() + INTERRUPT_GRACE_S)
        except KernelDied:
            return
        if not idle:
            self.broken = "the kernel did not recover from the interrupt after a time limit"

    def _drain_shell(self, msg_id: str) -> None:
        """Read the request's execute_reply so that the shell channel never piles up."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return


def _parse_reply(content: dict[str, Any], nonce: str) -> dict[str, Any] | None:
    """The reply in a display_data's content, or None when it is not ours (wrong type or nonce)."""
    data = content.get("data")
    text = data.get(protocol.MIME) if isinstance(data, dict) else None
    if not isinstance(text, str):
        return None
    if len(text) > protocol.MAX_MESSAGE_BYTES and nonce and nonce in text:  # ours, but too large to parse
        message = protocol.too_large("a reply", len(text))
        return {"nonce": nonce, "error": dict(zip(("module", "type"), protocol.ERROR_TYPE), message=message)}
    try:
        parsed = protocol.loads(text)
    except protocol.ProtocolError:
        return None  # junk under our type: not a reply (a real one may still follow)
    if not isinstance(parsed, dict) or parsed.get("nonce") != nonce:
        return None
    return parsed

"""Drive a real JupyterLab in Debian's headless Chromium (Playwright for Python): the support code of test_ui.py.

One :class:`JupyterLab` server (from the project's ``.venv``, on a free localhost port, with a token) serves a
throw-away copy of the notebooks, so nothing in the repository is written (no checkpoints in ``labs/``).
:class:`NotebookSession` opens one notebook the way a student does (its URL), runs its code cells one by one
through JupyterLab's own run command (so an expected ``NotImplementedError`` does not stop the rest), and
reports what the page shows: each cell's outputs as the notebook model holds them and as the DOM renders them.

The JavaScript below uses ``window.jupyterapp`` (exposed with ``--LabApp.expose_app_in_browser``), the same
handle JupyterLab's own UI tests (Galata) use.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags measured to work as root, offline, without a GPU (../shared/notes/browser-facts.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# "Would you like to get notified about official Jupyter news?" covers screenshots; tests do not want news.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}

SERVER_START_S = 120  # a loaded 2-core machine can take a while to import JupyterLab and its extensions
PAGE_LOAD_S = 120
KERNEL_READY_S = 120
CELL_TIMEOUT_S = float(os.environ.get("SEGLAB_UI_CELL_TIMEOUT", 240))
WIDGET_RENDER_S = 30
VIEWPORT = {"width": 1400, "height": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` from ``venv_bin`` serving ``root``; everything it writes goes under ``work``."""

    def __init__(self, venv_bin: Path, root: Path, work: Path, env: dict[str, str] | None = None):
        self.venv_bin, self.root, self.work = venv_bin, root, work
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyterlab.log"
        config = work / "config"
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
        self.env = dict(os.environ)
        self.env.pop("MPLBACKEND", None)  # the make file's Agg is for headless tests; a kernel uses inline
        self.env.update(
            PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_RUNTIME_DIR=str(work / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self) -> JupyterLab:
        cmd = [
            str(self.venv_bin / "jupyter"),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with open(self.log_path, "w") as log:
            # cwd = the served folder: nbgrader's server extension must not pick up the repository's course.
            self.proc = subprocess.Popen(
                cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "status")
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"JupyterLab did not answer on {self.base} within {SERVER_START_S} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and the kernels it started
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return "(no server log)"

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.base}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        # `reset` starts from an empty workspace: no tab (and kernel) of an earlier notebook is restored.
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "sessions"):
            try:
                self.api("DELETE", f"sessions/{session['id']}")
            except urllib.error.HTTPError:
                pass  # already gone


# --------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------
_JS_PANEL = "(() => { const w = window.jupyterapp.shell.currentWidget; return w && w.content ? w : null; })()"

_JS_KERNEL_READY = f"""() => {{
    const panel = {_JS_PANEL};
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}}"""

# Runs the given code cells one after the other in the page, each with the command behind Run -> "Run Selected
# Cell and Do Not Advance" (Ctrl+Enter), which resolves when the cell has finished. An error in one cell does not
# stop the next (unlike "Run All Cells"). Progress goes to window.__seglabRun for the test to follow.
_JS_RUN_CELLS = f"""(indices) => {{
    const panel = {_JS_PANEL};
    const state = window.__seglabRun = {{index: null, done: false, seconds: {{}}, failure: null}};
    (async () => {{
        try {{
            for (const i of indices) {{
                state.index = i;
                const start = performance.now();
                panel.content.activeCellIndex = i;
                panel.content.mode = 'command';
                await window.jupyterapp.commands.execute('notebook:run-cell');
                state.seconds[i] = Math.round(performance.now() - start) / 1000;
            }}
        }} catch (err) {{
            state.failure = String(err);
        }}
        state.done = true;
    }})();
}}"""

_JS_RUN_PROGRESS = """(last) => {
    const s = window.__seglabRun;
    return (s.done || s.index !== last) ? {index: s.index, done: s.done, seconds: s.seconds, failure: s.failure} : null;
}"""

_JS_UNFINISHED = f"""(indices) => indices.filter((i) => {{
    const prompt = {_JS_PANEL}.content.widgets[i].node.querySelector('.jp-InputArea-prompt');
    return !/\\[\\d+\\]/.test(prompt ? prompt.textContent : '');
}})"""

# Counts the distinct pictures each cell shows over time: a live plot that redraws shows several.
_JS_WATCH_IMAGES = """() => {
    const seen = window.__seglabImages = new Map();
    const record = (img) => {
        const cell = img.closest('.jp-Cell');
        if (!cell || !img.src) return;
        if (!seen.has(cell)) seen.set(cell, new Set());
        seen.get(cell).add(img.src.length + ':' + img.src.slice(-64));
    };
    new MutationObserver((mutations) => {
        for (const m of mutations) {
            const nodes = m.type === 'attributes' ? [m.target] : Array.from(m.addedNodes);
            for (const n of nodes) {
                if (n.nodeType !== 1) continue;
                if (n.tagName === 'IMG') record(n);
                n.querySelectorAll && n.querySelectorAll('img').forEach(record);
            }
        }
    }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""

_JS_REPORT = f"""() => {{
    const panel = {_JS_PANEL};
    const seen = window.__seglabImages || new Map();
    return panel.content.widgets.map((cell, index) => {{
        const model = cell.model;
        const out = {{index, type: model.type, source: model.sharedModel.getSource(), outputs: [], dom: null}};
        if (model.type !== 'code') return out;
        out.outputs = model.outputs.toJSON().map((o) => ({{
            output_type: o.output_type, name: o.name || null, ename: o.ename || null,
            evalue: o.evalue || null, text: Array.isArray(o.text) ? o.text.join('') : (o.text || ''),
            mimes: Object.keys(o.data || {{}}),
            traceback: (o.traceback || []).join('\\n').replace(/\\x1b\\[[0-9;]*m/g, ''),
        }}));
        const area = cell.node.querySelector('.jp-OutputArea');
        const imgs = area ? Array.from(area.querySelectorAll('.jp-RenderedImage img')) : [];
        const widgetImgs = area ? Array.from(area.querySelectorAll('.jupyter-widgets img')) : [];
        out.dom = {{
            outputs: area ? area.querySelectorAll('.jp-OutputArea-output').length : 0,
            images: imgs.length,
            loaded_images: imgs.filter((im) => im.complete && im.naturalWidth > 0).length,
            widget_images: widgetImgs.filter((im) => im.complete && im.naturalWidth > 0).length,
            widgets: area ? area.querySelectorAll('.jupyter-widgets').length : 0,
            widget_errors: area ? Array.from(area.querySelectorAll('.jupyter-widgets, .jp-OutputArea-output'))
                .map((n) => n.textContent).filter((t) => /Error displaying widget|Loading widget/.test(t)).length : 0,
            sliders: area ? area.querySelectorAll('.widget-slider').length : 0,
            progress: area ? Array.from(area.querySelectorAll(
                '.widget-hprogress .progress-bar, .widget-vprogress .progress-bar')).map((b) => b.className) : [],
            text: area ? area.textContent.slice(0, 4000) : '',
            distinct_images_seen: seen.has(cell.node) ? seen.get(cell.node).size : 0,
        }};
        return out;
    }});
}}"""

# What a slider's widget shows apart from the slider itself: its pictures and texts.
_JS_SLIDERS = """() => Array.from(document.querySelectorAll('.jp-OutputArea .widget-slider'))
    .map((slider, n) => {
        const cell = slider.closest('.jp-Cell');
        const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
        const label = slider.querySelector('.widget-label');
        return {n, cell: cells.indexOf(cell), description: label ? label.textContent : ''};
    })"""

_JS_SIGNATURE = """(n) => {
    const slider = document.querySelectorAll('.jp-OutputArea .widget-slider')[n];
    const output = slider.closest('.jp-OutputArea-output');
    const parts = [];
    output.querySelectorAll('img').forEach((im) => parts.push('img:' + im.src.length + ':' + im.src.slice(-64)));
    const clone = output.cloneNode(true);
    clone.querySelectorAll('.widget-slider, .widget-play').forEach((s) => s.remove());
    parts.push('text:' + clone.textContent);
    return parts.join('|');
}"""


@dataclass
class CellReport:
    index: int
    type: str
    source: str
    outputs: list[dict] = field(default_factory=list)
    dom: dict | None = None

    @property
    def errors(self) -> list[dict]:
        return [o for o in self.outputs if o["output_type"] == "error"]

    @property
    def stderr(self) -> str:
        return "".join(
            o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == "stderr"
        )

    def mime_count(self, mime: str) -> int:
        return sum(mime in o["mimes"] for o in self.outputs)

    def where(self) -> str:
        first = next((line for line in self.source.splitlines() if line.strip()), "")
        return f"cell {self.index} ({first[:70]!r})"


class NotebookSession:
    """One notebook opened in its own browser tab (of a shared browser context: JupyterLab's assets stay cached)."""

    def __init__(self, context: Any, server: JupyterLab, path: str):
        self.server, self.path = server, path
        self.page = context.new_page()
        self.page.set_viewport_size(VIEWPORT)
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))

    def close(self) -> None:
        try:
            self.page.close()
        finally:
            self.server.shutdown_kernels()

    def open(self) -> None:
        page = self.page
        page.goto(self.server.url(self.path), timeout=PAGE_LOAD_S * 1000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=PAGE_LOAD_S * 1000)
        page.evaluate(_JS_WATCH_IMAGES)
        try:
            page.wait_for_function(_JS_KERNEL_READY, timeout=KERNEL_READY_S * 1000)
        except Exception as err:
            dialog = page.locator(".jp-Dialog")
            shown = dialog.first.inner_text() if dialog.count() else "no dialog"
            raise AssertionError(
                f"{self.path}: the notebook's kernel did not start within {KERNEL_READY_S} s ({shown}):\n"
                f"{self.server.log_tail()}"
            ) from err

    def kernel_facts(self) -> dict:
        """What the running kernel says about itself (run beside the notebook, not as a cell)."""
        code = "import json, sys\nprint(json.dumps({'executable': sys.executable, 'prefix': sys.prefix}))"
        script = f"""async (code) => {{
            const panel = {_JS_PANEL};
            const kernel = panel.sessionContext.session.kernel;
            let text = '';
            const future = kernel.requestExecute({{code, store_history: false}});
            future.onIOPub = (msg) => {{ if (msg.header.msg_type === 'stream') text += msg.content.text; }};
            await future.done;
            return {{text, name: kernel.name, display: panel.sessionContext.kernelDisplayName}};
        }}"""
        got = self.page.evaluate(script, code)
        facts = json.loads(got["text"])
        facts.update(name=got["name"], display=got["display"])
        facts["toolbar"] = self.page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").inner_text()
        return facts

    def code_cells(self) -> list[int]:
        return self.page.evaluate(
            f"() => {_JS_PANEL}.content.widgets.map((c, i) => [c.model.type, i])"
            ".filter(([t]) => t === 'code').map(([, i]) => i)"
        )

    def run_cells(self, indices: list[int], timeout_s: float = CELL_TIMEOUT_S) -> dict[int, float]:
        """Run these code cells one by one as the Run menu does; return each cell's seconds.

        Fails, naming the cell, when one runs longer than ``timeout_s``.
        """
        self.page.evaluate(_JS_RUN_CELLS, indices)
        current = None
        while True:
            try:
                handle = self.page.wait_for_function(
                    _JS_RUN_PROGRESS, arg=current, timeout=timeout_s * 1000, polling=100
                )
            except Exception as err:
                raise AssertionError(
                    f"{self.path}: cell {current} did not finish within {timeout_s:.0f} s "
                    f"(SEGLAB_BUDGET={self.server.env.get('SEGLAB_BUDGET')})"
                ) from err
            state = handle.json_value()
            if state["done"]:
                break
            current = state["index"]
        assert not state["failure"], f"{self.path}: running cell {state['index']} failed: {state['failure']}"
        unfinished = self.page.evaluate(_JS_UNFINISHED, indices)
        assert not unfinished, f"{self.path}: cells {unfinished} show no execution count after running"
        return {int(i): s for i, s in state["seconds"].items()}

    def wait_for_widgets(self) -> None:
        """Widget views and pictures render asynchronously after their cell finished: wait until no widget is
        still loading and every picture is decoded (a broken one stays incomplete and is reported, not waited
        for forever)."""
        try:
            self.page.wait_for_function(
                """() => !Array.from(document.querySelectorAll('.jp-OutputArea-output'))
                    .some((n) => /Loading widget/.test(n.textContent))
                    && Array.from(document.querySelectorAll('.jp-OutputArea img')).every((im) => im.complete)""",
                timeout=WIDGET_RENDER_S * 1000,
            )
        except Exception:
            pass  # whatever is still missing is reported cell by cell by report()

    def report(self) -> list[CellReport]:
        return [CellReport(**c) for c in self.page.evaluate(_JS_REPORT)]

    def sliders(self) -> list[dict]:
        return self.page.evaluate(_JS_SLIDERS)

    def drag_slider(self, n: int, timeout_s: float = 60) -> tuple[str, str]:
        """Drag the n-th slider's handle across its track with the mouse; wait until its widget changes.

        Returns the widget's signature (pictures and texts) before and after.
        """
        page = self.page
        slider = page.locator(".jp-OutputArea .widget-slider").nth(n)
        slider.scroll_into_view_if_needed()
        before = page.evaluate(_JS_SIGNATURE, n)
        handle = slider.locator(".noUi-handle").first.bounding_box()
        track = slider.locator(".noUi-target").first.bounding_box()
        assert handle and track, f"{self.path}: slider {n} has no visible handle"
        x0, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        # Far from where it is: to 90 % of the track when on the left half, else to 10 %.
        middle = track["x"] + track["width"] / 2
        x1 = track["x"] + track["width"] * (0.9 if x0 < middle else 0.1)
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move(x1, y, steps=8)
        page.mouse.up()
        try:
            page.wait_for_function(
                "([n, before]) => (" + _JS_SIGNATURE + ")(n) !== before",
                arg=[n, before],
                timeout=timeout_s * 1000,
            )
        except Exception as err:
            raise AssertionError(
                f"{self.path}: moving slider {n} changed nothing in its widget within {timeout_s:.0f} s"
            ) from err
        return before, page.evaluate(_JS_SIGNATURE, n)

    def screenshots(self, path: Path, cells: dict[int, Path], max_height: int = 30000) -> None:
        """The whole notebook in one picture at ``path`` (the viewport made as tall as the notebook's cells), and
        a close-up of each cell in ``cells`` (index -> file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        page = self.page
        outer = f"{_JS_PANEL}.node.querySelector('.jp-WindowedPanel-outer')"
        inner = f"{outer}.querySelector('.jp-WindowedPanel-inner')"
        chrome = page.evaluate(f"() => window.innerHeight - {outer}.clientHeight")  # menus, toolbars
        height = page.evaluate(f"() => {inner}.offsetHeight")
        page.set_viewport_size(
            {"width": VIEWPORT["width"], "height": int(min(max_height, height + chrome + 40))}
        )
        try:
            page.wait_for_function(
                f"() => {outer}.clientHeight >= Math.min({inner}.offsetHeight, {max_height} - {chrome})",
                timeout=30_000,
            )
            page.evaluate(f"() => {outer}.scrollTo(0, 0)")
            page.screenshot(
                path=str(path),
                type="jpeg" if path.suffix == ".jpg" else "png",
                quality=85 if path.suffix == ".jpg" else None,
            )
            for index, file in cells.items():
                cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
                cell.scroll_into_view_if_needed()
                cell.screenshot(path=str(file))
        finally:
            page.set_viewport_size(VIEWPORT)

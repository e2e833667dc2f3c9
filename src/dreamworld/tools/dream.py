"""``dreamworld dream``: play inside a learned world model from a web page.

A small HTTP server (standard library, bound to 127.0.0.1 unless ``--host`` says otherwise) serves one
page. From a real starting frame, each key press is an action: the model imagines the next frame and
the real environment takes the same action beside it. A run that learned from vectors has no frames to
imagine: the predicted observation is drawn by a second copy of the simulator put in the state it
describes (classic control, MuJoCo, dm_control's cartpole, pendulum and reacher), and for every vector
task the page plots the predicted and the real observation, reward and continuation as they go.
"The agent drives" lets the trained policy pick the actions (Dreamer's actor on the imagined state;
the World Models controller on ``[z, h]``), and a temperature slider sets how wild the World Models
dream is.

Keys: arrows (left/right, up = gas or forward, down = brake; with two discrete actions, left and
right are actions 0 and 1), digits for discrete action indices, space for "no action" (action 0),
R to restart from a new real frame.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import io
import json
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamworld.errors import DreamworldError
from dreamworld.run.checkpoint import CHECKPOINT_NAME
from dreamworld.run.driver import single_env


class Session:
    """The imagined and the real rollout of one viewer; subclasses hold the model."""

    discrete: int  # number of discrete actions, 0 for continuous ones
    dims: int  # continuous action size
    temperature: float | None = None  # None: the model has no temperature
    env: Any

    def __init__(self) -> None:
        self.steps, self.seed, self.real_return, self.dream_return = 0, 0, 0.0, 0.0
        self.real_done = False
        # Simulators that draw with OpenGL (MuJoCo, dm_control) must stay on the thread that made
        # their context; the server answers each request on a new thread. So every simulator is
        # built and used on this one thread, which also serialises the requests.
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="dreamworld-dream")

    def make_env(self, config: Any) -> Any:
        """An environment built on the session's thread (see ``__init__``)."""
        return self.thread.submit(single_env, config).result()

    def close(self) -> None:
        """Closes the simulators on their thread, then the thread."""

        def close_all() -> None:
            for env in (getattr(self, "env", None), getattr(self, "mirror", None)):
                if env is not None:
                    env.close()

        self.thread.submit(close_all).result()
        self.thread.shutdown()

    def info(self) -> dict[str, Any]:
        return {
            "algorithm": type(self).__name__.removesuffix("Session").lower(),
            "discrete": self.discrete,
            "dims": self.dims,
            "carracing": self.carracing,
            "temperature": self.temperature,
        }

    def reset(self) -> dict[str, Any]:
        return self.thread.submit(self._reset).result()

    def step(self, action: Any, agent: bool, temperature: float | None) -> dict[str, Any]:
        return self.thread.submit(self._step, action, agent, temperature).result()

    def _reset(self) -> dict[str, Any]:
        self.seed += 1
        obs = self.env.reset(seed=self.seed)
        self.steps, self.real_return, self.dream_return, self.real_done = 0, 0.0, 0.0, False
        self.real_frame = self._frame(obs)
        imagined = self.start(obs)
        self.record(obs)
        return self._reply(imagined, None)

    def _step(self, action: Any, agent: bool, temperature: float | None) -> dict[str, Any]:
        if temperature is not None and self.temperature is not None:
            self.temperature = float(temperature)
        chosen = self.policy() if agent else self._parse(action)
        imagined, reward = self.imagine(chosen)
        self.dream_return += reward
        obs = None
        if not self.real_done:
            obs = self.env.step(chosen)
            self.real_frame, self.real_done = self._frame(obs), bool(obs["is_last"])
            self.real_return += float(obs["reward"])
        self.steps += 1
        self.record(obs)
        return self._reply(imagined, chosen)

    def record(self, obs: dict[str, np.ndarray] | None) -> None:
        """Keeps what the plots of a vector task show; ``obs`` is None once the real episode is over."""

    def plot(self) -> np.ndarray | None:
        """A frame of live plots beside the views, or None."""
        return None

    def start(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        raise NotImplementedError

    def imagine(self, action: Any) -> tuple[np.ndarray | None, float]:
        raise NotImplementedError

    def policy(self) -> Any:
        raise NotImplementedError

    @property
    def carracing(self) -> bool:
        return False

    def _parse(self, action: Any) -> Any:
        if self.discrete:
            index = int(action)
            if not 0 <= index < self.discrete:
                raise ValueError(f"action {index} outside 0..{self.discrete - 1}")
            return index
        vector = np.clip(np.asarray(action, np.float32).reshape(-1), -1, 1)
        if vector.shape != (self.dims,):
            raise ValueError(f"action of size {vector.size}, expected {self.dims}")
        return vector

    def _frame(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(obs["image"])

    def _reply(self, imagined: np.ndarray | None, action: Any) -> dict[str, Any]:
        shown = (
            None
            if action is None
            else (int(action) if self.discrete else np.asarray(action).round(2).tolist())
        )
        plot = self.plot()
        return {
            "imagined": None if imagined is None else _png(imagined),
            "real": None if self.real_frame is None else _png(self.real_frame),
            "plot": None if plot is None else _png(plot),
            "step": self.steps,
            "action": shown,
            "real_return": round(self.real_return, 2),
            "dream_return": round(self.dream_return, 2),
            "real_done": self.real_done,
            "temperature": self.temperature,
        }


class DreamerSession(Session):
    """Dreamer: the RSSM prior imagines, the decoder draws, the actor drives."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__()
        from dreamworld.algos.dreamer.agent import Dreamer

        self.agent = Dreamer.load(checkpoint, device="cpu").eval()
        config = self.agent.run_config
        assert config is not None
        self.name = config.env.name
        self.env = self.make_env(config.env)
        self.discrete = self.agent.actions if self.agent.discrete else 0
        self.dims = 0 if self.agent.discrete else self.agent.actions
        # A task learned from vectors: a second simulator draws the predicted observations.
        self.vectors = "image" not in self.agent.shapes
        self.mirror = self.make_env(config.env) if self.vectors else None
        self.history: dict[str, list[Any]] = {}

    @property
    def carracing(self) -> bool:
        return self.name == "carracing"

    @torch.no_grad()
    def start(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        rssm, agent = self.agent.wm.rssm, self.agent
        inputs = {key: torch.as_tensor(np.asarray(obs[key])[None]) for key in agent.shapes}
        if "vector" in inputs:
            inputs["vector"] = agent._vector(inputs["vector"])
        embed = rssm.post_embed(agent.wm.encoder(inputs))
        action = torch.zeros(1, agent.actions)
        self.state = rssm.obs_step(
            rssm.initial(1), action, embed, torch.ones(1, dtype=torch.bool), sample=False
        )
        self.history = {"real": [], "imagined": [], "real_reward": [], "reward": [], "cont": []}
        self.predicted: tuple[float, float] = (0.0, 1.0)
        return self._decode()

    @torch.no_grad()
    def imagine(self, action: Any) -> tuple[np.ndarray | None, float]:
        agent = self.agent
        if agent.discrete:
            encoded = torch.nn.functional.one_hot(torch.tensor([int(action)]), agent.actions).float()
        else:
            encoded = torch.as_tensor(np.asarray(action, np.float32)[None])
        self.state = agent.wm.rssm.img_step(self.state, encoded)
        feat = agent.wm.rssm.feat(self.state)
        reward = float(agent.wm.reward(feat).mode().reshape(-1)[0])
        cont = float(agent.wm.cont(feat).mode().reshape(-1)[0]) if agent.wm.cont is not None else 1.0
        self.predicted = (reward, cont)
        return self._decode(), reward

    def _frame(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(obs["image"]) if "image" in obs else self.env.render()

    def record(self, obs: dict[str, np.ndarray] | None) -> None:
        if not self.vectors:
            return
        history = self.history
        history["imagined"].append(self.imagined_vector)
        history["reward"].append(self.predicted[0])
        history["cont"].append(self.predicted[1])
        real = None if obs is None else np.asarray(obs["vector"], np.float64)
        history["real"].append(real)
        history["real_reward"].append(None if obs is None else float(obs["reward"]))

    def plot(self) -> np.ndarray | None:
        return plot_vectors(self.history) if self.vectors and self.history.get("imagined") else None

    @torch.no_grad()
    def policy(self) -> Any:
        action = self.agent.actor(self.agent.wm.rssm.feat(self.state)).mode()
        return self.agent.decode_action(action if self.agent.discrete else action.clamp(-1, 1))[0]

    def _decode(self) -> np.ndarray | None:
        """The predicted image; for a vector task the simulator's drawing of the predicted
        observation (None where its state cannot be set from one)."""
        decoded = self.agent.wm.decoder(self.agent.wm.rssm.feat(self.state))
        if not self.vectors:
            image = decoded["image"].mode()[0]
            return ((image + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        vector = decoded["vector"].mode()[0].float()
        if self.agent.vector_norm is not None:
            vector = vector * self.agent.vector_norm.std + self.agent.vector_norm.mean
        self.imagined_vector = vector.numpy().astype(np.float64)
        assert self.mirror is not None
        if not self.mirror.show_observation(self.imagined_vector):
            return None
        return self.mirror.render()


def plot_vectors(history: dict[str, list[Any]], dims: int = 8) -> np.ndarray:
    """Live plots of a dream of a vector task: the first ``dims`` observation dimensions (real solid,
    imagined dashed), the reward (real and predicted) and the predicted continuation, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imagined = np.array(history["imagined"])
    steps = np.arange(len(imagined))
    real = np.array([np.full(imagined.shape[1], np.nan) if r is None else r for r in history["real"]])
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(7.7, 4.6), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 1]}
    )
    colours = [f"C{index}" for index in range(10)]
    for dim in range(min(dims, imagined.shape[1])):
        colour = colours[dim % len(colours)]
        top.plot(steps, real[:, dim], color=colour, lw=1.2, label=f"{dim}")
        top.plot(steps, imagined[:, dim], color=colour, lw=1.2, ls="--")
    top.set_ylabel("observation")
    top.legend(ncol=8, fontsize=7, loc="upper left", title="dimension: real solid, imagined dashed",
               title_fontsize=7, frameon=False)  # fmt: skip
    rewards = [np.nan if r is None else r for r in history["real_reward"]]
    middle.plot(steps, rewards, color="black", lw=1.2, label="real")
    middle.plot(steps, history["reward"], color="tab:orange", lw=1.2, ls="--", label="imagined")
    middle.set_ylabel("reward")
    middle.legend(fontsize=7, loc="upper left", frameon=False)
    bottom.plot(steps, history["cont"], color="tab:green", lw=1.2)
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("continue")
    bottom.set_xlabel("step")
    figure.tight_layout()
    figure.canvas.draw()
    frame = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(figure)
    return frame


class WorldModelsSession(Session):
    """World Models: M dreams at a temperature, V draws, the best controller drives."""

    def __init__(self, logdir: Path) -> None:
        super().__init__()
        from dreamworld.algos.world_models.controller_stage import KIND, build_agent
        from dreamworld.algos.world_models.mdnrnn_stage import load_mdnrnn
        from dreamworld.config import load_config
        from dreamworld.run.checkpoint import load_checkpoint

        config = load_config(["worldmodels"], [logdir / "config.yaml"], {"logdir": str(logdir)})
        self.name = config.env.name
        self.env = self.make_env(dataclasses.replace(config.env, obs="image"))
        spec = load_mdnrnn(logdir)[1]
        self.discrete = int(spec["discrete"])
        self.dims = 0 if self.discrete else int(spec["actions"])
        best = sorted(logdir.glob("controller*/best.pt"))
        controller = load_checkpoint(best[0], kind=KIND) if best else None
        spec = controller["spec"] if controller else {"memory": True}
        memory, cell = bool(spec["memory"]), bool(spec.get("cell", False))
        self.model = build_agent(config, memory, True, self.env.act_space, "cpu", cell)
        self.params = controller["params"][None].float() if controller else None
        self.temperature = config.worldmodels.controller.temperature
        self.generator = torch.Generator().manual_seed(config.seed)

    @property
    def carracing(self) -> bool:
        return self.name == "carracing"

    @torch.no_grad()
    def start(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.z = self.model.vae.encode(torch.as_tensor(obs["image"][None]))[0]
        assert self.model.mdnrnn is not None
        self.state = self.model.mdnrnn.initial(1)
        return self._decode()

    @torch.no_grad()
    def imagine(self, action: Any) -> tuple[np.ndarray, float]:
        model, mdnrnn = self.model, self.model.mdnrnn
        assert mdnrnn is not None
        tensor = (
            torch.tensor([int(action)])
            if self.discrete
            else torch.as_tensor(np.asarray(action, np.float32)[None])
        )
        prediction, self.state = mdnrnn.step(self.z, model.action_features(tensor), self.state)
        uniform = torch.rand(self.z.shape, generator=self.generator)
        normal = torch.randn(self.z.shape, generator=self.generator)
        self.z = mdnrnn.sample(prediction, max(self.temperature or 1.0, 1e-3), uniform, normal)
        return self._decode(), float(prediction.reward[0])

    @torch.no_grad()
    def policy(self) -> Any:
        if self.params is None:
            return self.env.act_space.sample()
        action = self.model.act(self.params, self.z, self.state, torch.zeros(1, dtype=torch.long))[0]
        return int(action) if self.discrete else action.numpy()

    def _decode(self) -> np.ndarray:
        image = self.model.vae.decode(self.z)[0]
        return ((image + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def open_session(logdir: str | Path, checkpoint: str | Path | None = None) -> Session:
    """The viewer's model for a run directory (Dreamer or World Models)."""
    logdir = Path(logdir)
    if (logdir / "vae").is_dir():
        if not (logdir / "mdnrnn" / "best.pt").exists():
            raise DreamworldError(
                f"{logdir} has no trained MDN-RNN; run `dreamworld worldmodels train-mdnrnn` first"
            )
        return WorldModelsSession(logdir)
    path = Path(checkpoint) if checkpoint else logdir / CHECKPOINT_NAME
    if not path.exists():
        raise DreamworldError(f"no checkpoint at {path}; train first or pass --checkpoint FILE")
    return DreamerSession(path)


def serve(session: Session, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """An HTTP server for ``session`` (not yet serving: call ``serve_forever``); port 0 picks one."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/api/info":
                self._json(session.info())
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/api/reset":
                    self._json(session.reset())
                elif self.path == "/api/step":
                    self._json(
                        session.step(body.get("action"), bool(body.get("agent")), body.get("temperature"))
                    )
                else:
                    self._send(404, b"not found", "text/plain")
            except (ValueError, TypeError) as error:
                self._send(400, str(error).encode(), "text/plain")

        def _json(self, value: Any) -> None:
            self._send(200, json.dumps(value).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page was closed or reloaded mid-answer: nothing to tell anyone

        def log_message(self, *args: Any) -> None:
            """Quiet: one line per frame would flood the terminal."""

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise DreamworldError(
                f"port {port} on {host} is in use (another dream page?): pass --port N, or --port 0 for "
                "a free one"
            ) from None
        raise DreamworldError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None


def _png(frame: np.ndarray) -> str:
    import imageio.v3 as iio

    frame = np.asarray(frame)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, -1)
    buffer = io.BytesIO()
    iio.imwrite(buffer, frame, extension=".png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dreamworld: inside the learned world</title>
<style>
body{font-family:sans-serif;background:#111;color:#eee;margin:1.5em}
.views{display:flex;gap:2em}.view{text-align:center}
img{width:384px;height:384px;image-rendering:pixelated;background:#000;border:1px solid #444}
#plot{width:770px;height:460px;image-rendering:auto;background:#fff}
[hidden]{display:none!important}
.none{width:384px;height:384px;display:flex;align-items:center;justify-content:center;border:1px solid #444}
button{font-size:1em;margin-right:1em}#status{margin-top:1em;font-family:monospace}
</style></head><body>
<h2>Inside the learned world</h2>
<p>Arrows or digits act, space waits, R restarts from a new real frame.</p>
<div><button id="mode">you drive</button><button id="restart">restart (R)</button>
<span id="tempbox" hidden>temperature <input id="temp" type="range" min="0.05" max="2" step="0.05">
<span id="tempval"></span></span></div>
<div class="views">
<div class="view"><img id="imagined" alt="imagined"><div id="undrawable" class="none" hidden>
the simulator cannot be set from an observation:<br>the plots below show the dream</div>
<div>the model's dream</div></div>
<div class="view"><img id="real" alt="real"><div>the real environment</div></div></div>
<div class="view"><img id="plot" alt="plots" hidden></div>
<div id="status">loading...</div>
<script>
let info = null, agent = false, timer = null, busy = false;
const $ = (id) => document.getElementById(id);
function show(r) {
  $("imagined").hidden = r.imagined === null; $("undrawable").hidden = r.imagined !== null;
  if (r.imagined !== null) $("imagined").src = r.imagined;
  if (r.real !== null) $("real").src = r.real;
  $("plot").hidden = r.plot === null;
  if (r.plot !== null) $("plot").src = r.plot;
  const over = r.real_done ? " (real episode over)" : "";
  $("status").textContent = `step ${r.step}  action ${JSON.stringify(r.action)}  ` +
    `dream return ${r.dream_return}  real return ${r.real_return}${over}`;
  $("status").dataset.step = r.step;
}
async function post(path, body) {
  const response = await fetch(path, {method: "POST", body: JSON.stringify(body || {})});
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}
async function step(action) {
  if (busy) return; busy = true;
  try {
    const temperature = info.temperature === null ? null : parseFloat($("temp").value);
    show(await post("/api/step", {action: action, agent: agent, temperature: temperature}));
  } finally { busy = false; }
}
function actionFor(key) {
  if (info.discrete) {
    // Two actions are left/right (CartPole); more follow CarRacing and ViZDoom: none, left, right, ...
    const arrows = info.discrete === 2 ? {ArrowLeft: 0, ArrowRight: 1}
      : {" ": 0, ArrowLeft: 1, ArrowRight: 2, ArrowUp: 3, ArrowDown: 4};
    if (/^[0-9]$/.test(key) && +key < info.discrete) return +key;
    if (key in arrows && arrows[key] < info.discrete) return arrows[key];
    return null;
  }
  const a = new Array(info.dims).fill(0);
  // CarRacing's gas and brake are two actions; with one throttle axis (env.throttle) it is like the rest.
  const pedals = info.carracing && info.dims === 3;
  if (pedals) { a[1] = -1; a[2] = -1; }  // no gas, no brake: [-1, 1] maps to [0, 1]
  if (key === "ArrowLeft") a[0] = -1; else if (key === "ArrowRight") a[0] = 1;
  else if (key === "ArrowUp") { if (info.dims > 1) a[1] = 1; }
  else if (key === "ArrowDown") { if (pedals) a[2] = 1; else if (info.dims > 1) a[1] = -1; }
  else if (key !== " ") return null;
  return a;
}
document.addEventListener("keydown", (event) => {
  if (!info) return;
  if (event.key === "r" || event.key === "R") { restart(); return; }
  const action = actionFor(event.key);
  if (action !== null && !agent) { event.preventDefault(); step(action); }
});
async function restart() { show(await post("/api/reset")); }
$("restart").onclick = restart;
$("mode").onclick = () => {
  agent = !agent; $("mode").textContent = agent ? "the agent drives" : "you drive";
  if (agent) timer = setInterval(() => step(null), 100); else clearInterval(timer);
};
$("temp").oninput = () => { $("tempval").textContent = $("temp").value; };
(async () => {
  info = await (await fetch("/api/info")).json();
  if (info.temperature !== null) {
    $("tempbox").hidden = false; $("temp").value = info.temperature;
    $("tempval").textContent = info.temperature;
  }
  await restart();
})();
</script></body></html>
"""

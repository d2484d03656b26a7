"""Flower's side of the model-quality benchmark: FedAvg with Flower's own client and strategy classes.

    .venv-flower/bin/python bench/flower_quality.py IN.npz CONFIG.json OUT.json     # started by bench/quality.py

Runs inside .venv-flower (flwr[simulation]==1.41.0, which cannot share .venv with eth-ape). Each client is a
`flwr.client.NumPyClient` whose `fit` trains the same CNN (fedchain.learning.models, torch only) on its shard with the same
local loop as fedchain's `train_local` (SGD with the spec's learning rate, momentum, batch size and local epochs,
shuffling from a torch generator seeded with the same per-client, per-round seed). The server side is Flower's
`FedAvg` strategy (its default in-place path, `aggregate_inplace`): each round the clients' results become
`FitRes` objects (parameters serialised with Flower's `ndarrays_to_parameters`) and go through
`FedAvg.aggregate_fit`, exactly as Flower's server hands them over.

Driven in-process, not with `flwr.simulation` (Ray): on a 2-core machine Ray's workers and object store would
dominate the seconds per round, and the question here is the model the FedAvg math produces. The seconds per
round timed here cover the clients' fits and the strategy's aggregation, as on fedchain's side.

IN.npz: x_train, y_train, x_test, y_test, shard_<i> (index arrays), init_<j> (the initial state, in `names` order).
CONFIG.json: {"architecture", "arch_config", "names", "rounds", "local_epochs", "batch_size", "learning_rate",
"momentum", "client_seeds": [[seed per round] per client]}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

import flwr  # noqa: E402
from flwr.client import NumPyClient  # noqa: E402
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402

from fedchain.learning.models import build_architecture  # noqa: E402  (torch only: no eth-ape, no pydantic)


class TorchClient(NumPyClient):
    def __init__(self, model: torch.nn.Module, names: list[str], x: np.ndarray, y: np.ndarray, cfg: dict, seeds: list[int]):
        self.model, self.names, self.cfg, self.seeds = model, names, cfg, seeds
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.int64)

    def get_parameters(self, config):  # noqa: ANN001
        state = self.model.state_dict()
        return [state[n].detach().cpu().numpy().copy() for n in self.names]

    def set_parameters(self, parameters) -> None:  # noqa: ANN001
        self.model.load_state_dict({n: torch.from_numpy(np.asarray(p).copy()) for n, p in zip(self.names, parameters)})

    def fit(self, parameters, config):  # noqa: ANN001
        self.set_parameters(parameters)
        seed = self.seeds[int(config["server_round"]) - 1]
        cfg, model, x, y = self.cfg, self.model, self.x, self.y
        n, bs = x.shape[0], cfg["batch_size"]
        model.train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg["learning_rate"],
                              momentum=cfg["momentum"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(cfg["local_epochs"]):
                perm = torch.randperm(n, generator=gen)
                for b in range((n + bs - 1) // bs):
                    idx = perm[b * bs:(b + 1) * bs]
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        return self.get_parameters({}), int(n), {}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    model.eval()
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    logits = model(xt)
    return float(F.cross_entropy(logits, yt)), float((logits.argmax(1) == yt).float().mean())


def main() -> None:
    data_path, config_path, out_path = map(Path, sys.argv[1:4])
    torch.set_num_threads(1)
    cfg = json.loads(config_path.read_text())
    data = np.load(data_path)
    names = cfg["names"]
    init = [data[f"init_{j}"] for j in range(len(names))]
    x_train, y_train = data["x_train"], data["y_train"]
    model = build_architecture(cfg["architecture"], tuple(x_train.shape[1:]), 10, cfg["arch_config"])
    clients = []
    for i, seeds in enumerate(cfg["client_seeds"]):
        shard = data[f"shard_{i}"]
        clients.append(TorchClient(model, names, x_train[shard], y_train[shard], cfg, seeds))
    strategy = FedAvg(initial_parameters=ndarrays_to_parameters(init))  # inplace=True: aggregate_inplace
    parameters = strategy.initialize_parameters(client_manager=None)
    rounds = []
    for server_round in range(1, cfg["rounds"] + 1):
        started = time.perf_counter()
        results = []
        for client in clients:
            nd, num, metrics = client.fit(parameters_to_ndarrays(parameters), {"server_round": server_round})
            results.append((None, FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(nd), num, metrics)))
        fit_done = time.perf_counter()
        parameters, _ = strategy.aggregate_fit(server_round, results, [])
        seconds = time.perf_counter() - started
        clients[0].set_parameters(parameters_to_ndarrays(parameters))
        loss, acc = evaluate(model, data["x_test"], data["y_test"])
        rounds.append({"round": server_round, "seconds": seconds, "aggregate_seconds": seconds - (fit_done - started),
                       "test_accuracy": acc, "test_loss": loss})
    out_path.write_text(json.dumps({"flwr": flwr.__version__, "numpy": np.__version__, "torch": torch.__version__,
                                    "rounds": rounds}))


if __name__ == "__main__":
    main()

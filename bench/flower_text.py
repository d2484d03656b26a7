"""Flower's side of the text benchmark: FedAvg on Shakespeare roles with Flower's own client and strategy classes.

    .venv-flower/bin/python bench/flower_text.py IN.npz CONFIG.json OUT.json     # started by bench/text.py

Runs inside .venv-flower (flwr[simulation]==1.41.0; it cannot share .venv with eth-ape). Each client is a
`flwr.client.NumPyClient` whose `fit` trains the same character LSTM (fedchain.learning.models, torch only) on its
role's windows with the same local loop as fedchain's `train_local` (a fresh optimizer each round, the spec's
optimizer, learning rate, batch size and local epochs, shuffling from a torch generator seeded with the same per-client,
per-round seed, cross-entropy over every position). The server side is Flower's `FedAvg` strategy (its default
in-place path): each round the clients' results become `FitRes` objects (`ndarrays_to_parameters`) and go through
`FedAvg.aggregate_fit`, as Flower's server hands them over. Driven in-process, not through Ray (see
bench/flower_quality.py for why); the seconds per round cover the clients' fits and the aggregation.

IN.npz: x_<i>, y_<i> (client i's windows, int64 (N_i, window)), x_test, y_test, init_<j> (the initial state in `names`
order). CONFIG.json: {"architecture", "arch_config", "num_classes", "names", "rounds", "local_epochs", "batch_size",
"learning_rate", "momentum", "optimizer", "client_seeds": [[seed per round] per client]}.
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


def next_token_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


class TextClient(NumPyClient):
    def __init__(self, model: torch.nn.Module, names: list[str], x: np.ndarray, y: np.ndarray, cfg: dict, seeds: list[int]):
        self.model, self.names, self.cfg, self.seeds = model, names, cfg, seeds
        self.x = torch.as_tensor(x, dtype=torch.int64)
        self.y = torch.as_tensor(y, dtype=torch.int64)

    def get_parameters(self, config):  # noqa: ANN001
        state = self.model.state_dict()
        return [state[n].detach().cpu().numpy().copy() for n in self.names]

    def set_parameters(self, parameters) -> None:  # noqa: ANN001
        self.model.load_state_dict({n: torch.from_numpy(np.asarray(p).copy()) for n, p in zip(self.names, parameters)})

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg["optimizer"] == "adam":
            return torch.optim.Adam(params, lr=self.cfg["learning_rate"])
        return torch.optim.SGD(params, lr=self.cfg["learning_rate"], momentum=self.cfg["momentum"])

    def fit(self, parameters, config):  # noqa: ANN001
        self.set_parameters(parameters)
        seed = self.seeds[int(config["server_round"]) - 1]
        cfg, model, x, y = self.cfg, self.model, self.x, self.y
        n, bs = x.shape[0], cfg["batch_size"]
        model.train()
        opt = self._optimizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(cfg["local_epochs"]):
                perm = torch.randperm(n, generator=gen)
                for b in range((n + bs - 1) // bs):
                    idx = perm[b * bs:(b + 1) * bs]
                    loss = next_token_loss(model(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        return self.get_parameters({}), int(n), {}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> dict[str, float]:
    """Mean loss and accuracy over every position, and accuracy at each window's last position (LEAF's metric)."""
    model.eval()
    xt, yt = torch.as_tensor(x, dtype=torch.int64), torch.as_tensor(y, dtype=torch.int64)
    loss_sum, correct, last = 0.0, 0, 0
    for i in range(0, xt.shape[0], batch):
        logits, target = model(xt[i:i + batch]), yt[i:i + batch]
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
        hits = logits.argmax(-1) == target
        correct += int(hits.sum())
        last += int(hits[:, -1].sum())
    return {"test_loss": loss_sum / yt.numel(), "test_accuracy": correct / yt.numel(),
            "last_position_accuracy": last / yt.shape[0]}


def main() -> None:
    data_path, config_path, out_path = map(Path, sys.argv[1:4])
    torch.set_num_threads(1)
    cfg = json.loads(config_path.read_text())
    data = np.load(data_path)
    names = cfg["names"]
    init = [data[f"init_{j}"] for j in range(len(names))]
    model = build_architecture(cfg["architecture"], tuple(data["x_test"].shape[1:]), cfg["num_classes"], cfg["arch_config"])
    clients = [TextClient(model, names, data[f"x_{i}"], data[f"y_{i}"], cfg, seeds)
               for i, seeds in enumerate(cfg["client_seeds"])]
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
        rounds.append({"round": server_round, "seconds": seconds, "aggregate_seconds": seconds - (fit_done - started),
                       **evaluate(model, data["x_test"], data["y_test"])})
    out_path.write_text(json.dumps({"flwr": flwr.__version__, "numpy": np.__version__, "torch": torch.__version__,
                                    "rounds": rounds}))


if __name__ == "__main__":
    main()

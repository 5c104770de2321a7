"""A picture of one genome's network: inputs left, outputs right, hidden nodes by layer in between;
enabled connections drawn green (positive) or red (negative) with thickness growing with |weight|.

Training draws the champion at each new best; on demand, from a saved run or checkpoint:

    python -m agents.neat.draw runs/RUN [--out brain.png]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import matplotlib

matplotlib.use("Agg")  # files only: training runs headless
import matplotlib.pyplot as plt  # noqa: E402
import typer  # noqa: E402

from agents.neat.genome import Genome  # noqa: E402
from agents.neat.network import node_layers  # noqa: E402


def _positions(genome: Genome, n_inputs: int, n_outputs: int) -> dict[int, tuple[float, float]]:
    layers = node_layers(genome, n_inputs, recurrent=False) if _acyclic(genome) else {}
    outputs = set(range(n_outputs))
    hidden = [int(n) for n in genome.node_ids if int(n) not in outputs]
    last = max([layers.get(n, 1) for n in hidden] + [1]) + 1
    columns: dict[int, list[int]] = {0: [-1 - i for i in range(n_inputs)], last: list(range(n_outputs))}
    for n in hidden:
        columns.setdefault(min(layers.get(n, 1), last - 1), []).append(n)
    pos = {}
    for x, nodes in columns.items():
        for j, n in enumerate(nodes):
            pos[n] = (x / last, (j + 1) / (len(nodes) + 1))
    return pos


def _acyclic(genome: Genome) -> bool:
    from agents.neat.genome import creates_cycle

    return not any(
        creates_cycle(genome, int(t), int(s)) for s, t in zip(genome.source, genome.target, strict=False) if s != t
    )


def draw_genome(genome: Genome, n_inputs: int, n_outputs: int, path: str | Path, title: str = "") -> Path:
    """Write the network of `genome` as a PNG at `path` and return the path."""
    pos = _positions(genome, n_inputs, n_outputs)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    weights = genome.weight[genome.enabled]
    scale = max(float(abs(weights).max(initial=0.0)), 1e-9)
    for s, t, w, on in zip(genome.source, genome.target, genome.weight, genome.enabled, strict=False):
        if not on:
            continue
        (x0, y0), (x1, y1) = pos[int(s)], pos[int(t)]
        ax.plot([x0, x1], [y0, y1], color="tab:green" if w > 0 else "tab:red", lw=0.5 + 4 * abs(w) / scale, alpha=0.7)
    for node, (x, y) in pos.items():
        kind = "tab:blue" if node < 0 else ("tab:orange" if node < n_outputs else "lightgray")
        ax.scatter([x], [y], s=300, color=kind, edgecolors="black", zorder=3)
        ax.annotate(str(node), (x, y), ha="center", va="center", fontsize=7, zorder=4)
    ax.set_title(title or "champion")
    ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(
    target: Annotated[Path, typer.Argument(help="A NEAT run directory or checkpoint file.")],
    out: Annotated[Path | None, typer.Option(help="Picture to write (default: champion.png beside the run).")] = None,
) -> None:
    """Draw the champion of a saved NEAT run."""
    from agents.api import load  # noqa: PLC0415  (torch and the agents only when the command runs)
    from core.errors import SuiteError  # noqa: PLC0415

    try:
        agent = load(target)
        if not hasattr(agent, "draw_champion"):
            raise SuiteError(f"{target} holds the {agent.name} agent; only neat runs have a network to draw")
        path = out or (target if target.is_dir() else target.parent.parent) / "champion.png"
        print(agent.draw_champion(path))
    except SuiteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    typer.run(main)

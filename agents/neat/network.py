"""Genomes compiled into networks that evaluate a whole population in a few array ops per step.

Every genome is compiled once into topologically ordered layers (a node's layer is one more than the
deepest node feeding it). The population's networks are then stacked: all genomes' nodes share one
value array `values` of shape (n_rows, batch), and each layer is one gather-multiply-segment-sum over
the concatenated connections of every genome. A recurrent network is a single "layer" holding every
non-input node, fed from the previous step's values (neat-python's RecurrentNetwork semantics).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from agents.neat.genome import Genome

SIGMOID_SLOPE = 4.9
"""The paper's steepened sigmoid 1 / (1 + exp(-4.9 x)) (section 4.1)."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The same function written with tanh, which cannot overflow: no clipping needed (and faster).
    return 0.5 + 0.5 * np.tanh(0.5 * SIGMOID_SLOPE * x)


def node_layers(genome: Genome, n_inputs: int, recurrent: bool) -> dict[int, int]:
    """Layer of each non-input node: 1 + the deepest enabled source (inputs are layer 0); all 1 when recurrent."""
    if recurrent:
        return {int(n): 1 for n in genome.node_ids}
    on = genome.enabled
    parents: dict[int, list[int]] = defaultdict(list)
    for s, t in zip(genome.source[on], genome.target[on], strict=False):
        parents[int(t)].append(int(s))
    layer: dict[int, int] = {-1 - i: 0 for i in range(n_inputs)}

    def depth(node: int) -> int:  # the genome is acyclic (add_connection refuses cycles)
        stack = [node]
        while stack:
            top = stack[-1]
            missing = [p for p in parents[top] if p not in layer]
            if missing:
                stack.extend(missing)
                continue
            layer[top] = 1 + max((layer[p] for p in parents[top]), default=0)
            stack.pop()
        return layer[node]

    return {int(n): depth(int(n)) for n in genome.node_ids}


class PopulationNetwork:
    """The networks of `genomes`, each run on `batch` inputs at once (K episodes per genome).

    `activate(obs)`: obs (n_genomes * batch, n_inputs) float, genome-major (row g * batch + k), ->
    outputs (n_genomes * batch, n_outputs) in (0, 1).
    """

    def __init__(self, genomes: list[Genome], n_inputs: int, n_outputs: int, batch: int = 1, recurrent: bool = False):
        self.n_genomes, self.n_inputs, self.n_outputs, self.batch = len(genomes), n_inputs, n_outputs, batch
        self.recurrent = recurrent
        # Rows 0 .. G * n_inputs - 1 hold the inputs (genome-major); every genome's other nodes follow.
        row_of: list[dict[int, int]] = []
        next_row = self.n_genomes * n_inputs
        per_layer: dict[int, list[tuple[np.ndarray, ...]]] = defaultdict(list)
        for g, genome in enumerate(genomes):
            rows = {-1 - i: g * n_inputs + i for i in range(n_inputs)}
            rows.update({int(n): next_row + j for j, n in enumerate(genome.node_ids)})
            next_row += genome.node_ids.size
            row_of.append(rows)
            layers = node_layers(genome, n_inputs, recurrent)
            bias_of = dict(zip(genome.node_ids.tolist(), genome.biases.tolist(), strict=False))
            on = genome.enabled
            src = np.array([rows[int(s)] for s in genome.source[on]], dtype=np.int64)
            dst = np.array([rows[int(t)] for t in genome.target[on]], dtype=np.int64)
            dst_layer = np.array([layers[int(t)] for t in genome.target[on]], dtype=np.int64)
            for layer in set(layers.values()):
                nodes = np.array([n for n, at in layers.items() if at == layer], dtype=np.int64)
                node_rows = np.array([rows[int(n)] for n in nodes], dtype=np.int64)
                node_bias = np.array([bias_of[int(n)] for n in nodes], dtype=np.float64)
                sel = dst_layer == layer
                per_layer[layer].append((node_rows, node_bias, src[sel], dst[sel], genome.weight[on][sel]))
        self.n_rows = next_row
        self.layers = [self._stack(per_layer[layer]) for layer in sorted(per_layer)]
        self.output_rows = np.array([[rows[o] for o in range(n_outputs)] for rows in row_of], dtype=np.int64)
        self.values = np.zeros((self.n_rows, batch))

    @staticmethod
    def _stack(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        """One layer of all genomes: node rows and biases, connections sorted by target for a segment sum."""
        node_rows, bias, src, dst, w = (np.concatenate(col) for col in zip(*parts, strict=False))
        position = np.empty(int(node_rows.max()) + 1, dtype=np.int64)
        position[node_rows] = np.arange(node_rows.size)
        order = np.argsort(position[dst], kind="stable")
        src, dst_pos, w = src[order], position[dst][order], w[order]
        starts = np.flatnonzero(np.r_[True, dst_pos[1:] != dst_pos[:-1]]) if dst_pos.size else dst_pos
        return node_rows, bias[:, None], src, w[:, None], dst_pos[starts], starts

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Zero the node values (all, or the (batch,) columns in `mask`): recurrent state at an episode start."""
        if mask is None:
            self.values[:] = 0.0
        else:
            self.values[:, mask] = 0.0

    def activate(self, obs: np.ndarray) -> np.ndarray:
        g, k, n_in = self.n_genomes, self.batch, self.n_inputs
        values = self.values
        values[: g * n_in] = obs.reshape(g, k, n_in).transpose(0, 2, 1).reshape(g * n_in, k)
        source = values.copy() if self.recurrent else values  # recurrent: every node reads last step's values
        for node_rows, bias, src, w, dst_unique, starts in self.layers:
            if dst_unique.size == node_rows.size:  # every node has an input: no scatter needed
                total = np.add.reduceat(source[src] * w, starts, axis=0)
            else:
                total = np.zeros((node_rows.size, k))
                if src.size:
                    total[dst_unique] = np.add.reduceat(source[src] * w, starts, axis=0)
            values[node_rows] = sigmoid(total + bias)
        out = values[self.output_rows]  # (G, n_outputs, K)
        return out.transpose(0, 2, 1).reshape(g * k, self.n_outputs)

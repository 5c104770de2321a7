"""Benchmark: our NEAT against neat-python with matched settings.

XOR: generations to fitness 3.9 (4 - sum of squared errors, neat-python's example criterion), wall
time and success rate over several seeds. CartPole-v1: a fixed number of generations without early
stop; env steps/s and genome evaluations/s. Prints progress and a table of ours/theirs ratios.

    python bench/bench_neat.py [--quick]      (needs `pip install neat-python`)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.neat.config import NeatConfig  # noqa: E402
from agents.neat.network import PopulationNetwork  # noqa: E402
from agents.neat.population import Population  # noqa: E402
from agents.neat.rollout import BatchRollout  # noqa: E402
from envs import EnvConfig  # noqa: E402
from envs.xor import XOR_INPUTS, XOR_TARGETS  # noqa: E402

XOR_THRESHOLD = 3.9
MAX_XOR_GENERATIONS = 300

# neat-python settings matched to NeatConfig's defaults (paper values).
NEAT_PYTHON_CONFIG = """
[NEAT]
fitness_criterion     = max
fitness_threshold     = {threshold}
pop_size              = 150
reset_on_extinction   = False
no_fitness_termination = {no_termination}
seed                  = {seed}

[DefaultGenome]
activation_default      = sigmoid
activation_mutate_rate  = 0.0
activation_options      = sigmoid
aggregation_default     = sum
aggregation_mutate_rate = 0.0
aggregation_options     = sum
bias_init_mean          = 0.0
bias_init_stdev         = 1.0
bias_init_type          = gaussian
bias_max_value          = 30.0
bias_min_value          = -30.0
bias_mutate_power       = 0.5
bias_mutate_rate        = 0.8
bias_replace_rate       = 0.1
compatibility_disjoint_coefficient = 1.0
compatibility_weight_coefficient   = 0.4
conn_add_prob           = 0.05
conn_delete_prob        = 0.0
enabled_default         = True
enabled_mutate_rate     = 0.01
enabled_rate_to_true_add  = 0.0
enabled_rate_to_false_add = 0.0
feed_forward            = True
initial_connection      = full_direct
node_add_prob           = 0.03
node_delete_prob        = 0.0
num_hidden              = 0
num_inputs              = {inputs}
num_outputs             = {outputs}
response_init_mean      = 1.0
response_init_stdev     = 0.0
response_init_type      = gaussian
response_max_value      = 30.0
response_min_value      = -30.0
response_mutate_power   = 0.0
response_mutate_rate    = 0.0
response_replace_rate   = 0.0
weight_init_mean        = 0.0
weight_init_stdev       = 1.0
weight_init_type        = gaussian
weight_max_value        = 30
weight_min_value        = -30
weight_mutate_power     = 0.5
weight_mutate_rate      = 0.8
weight_replace_rate     = 0.1

[DefaultSpeciesSet]
compatibility_threshold = 3.0

[DefaultStagnation]
species_fitness_func = max
max_stagnation       = 15
species_elitism      = 2

[DefaultReproduction]
elitism            = 1
survival_threshold = 0.2
min_species_size   = 2
"""


def neat_python_config(inputs: int, outputs: int, seed: int, threshold: float, no_termination: bool):
    import neat

    text = NEAT_PYTHON_CONFIG.format(
        inputs=inputs, outputs=outputs, seed=seed, threshold=threshold, no_termination=no_termination
    )
    path = Path(tempfile.mkdtemp()) / "neat.cfg"
    path.write_text(text)
    return neat.Config(
        neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet, neat.DefaultStagnation, path
    )


# XOR -------------------------------------------------------------------------------------------
def xor_ours(seed: int) -> tuple[int | None, float]:
    started = time.perf_counter()
    pop = Population(NeatConfig(), 2, 1, np.random.default_rng(seed))
    for generation in range(1, MAX_XOR_GENERATIONS + 1):
        net = PopulationNetwork(pop.genomes, 2, 1, batch=4)
        out = net.activate(np.tile(XOR_INPUTS, (len(pop.genomes), 1))).reshape(-1, 4)
        fitness = 4.0 - ((out - XOR_TARGETS) ** 2).sum(axis=1)
        if fitness.max() >= XOR_THRESHOLD:
            return generation, time.perf_counter() - started
        pop.tell(fitness)
    return None, time.perf_counter() - started


def xor_theirs(seed: int) -> tuple[int | None, float]:
    import neat

    config = neat_python_config(2, 1, seed, XOR_THRESHOLD, False)

    def eval_genomes(genomes, config):
        for _, genome in genomes:
            net = neat.nn.FeedForwardNetwork.create(genome, config)
            genome.fitness = 4.0 - sum(
                (net.activate(x)[0] - y) ** 2 for x, y in zip(XOR_INPUTS.tolist(), XOR_TARGETS, strict=False)
            )

    started = time.perf_counter()
    population = neat.Population(config)
    best = population.run(eval_genomes, MAX_XOR_GENERATIONS)
    solved = best is not None and best.fitness >= XOR_THRESHOLD
    return (population.generation if solved else None), time.perf_counter() - started


# CartPole --------------------------------------------------------------------------------------
def cartpole_ours(generations: int, seed: int) -> tuple[int, int, float]:
    """(env steps, genome evaluations, wall seconds) for `generations` generations, one episode each."""
    pop = Population(NeatConfig(), 4, 2, np.random.default_rng(seed))
    rollout = BatchRollout(EnvConfig("CartPole-v1"), 150, 1, seed)
    steps = evaluations = 0
    started = time.perf_counter()
    for generation in range(generations):
        net = PopulationNetwork(pop.genomes, 4, 2, batch=1)
        returns, lengths = rollout.play(net, seed=seed + generation)
        steps, evaluations = steps + int(lengths.sum()), evaluations + len(pop.genomes)
        pop.tell(returns.mean(axis=1))
    return steps, evaluations, time.perf_counter() - started


def cartpole_theirs(generations: int, seed: int) -> tuple[int, int, float]:
    import gymnasium as gym
    import neat

    config = neat_python_config(4, 2, seed, 1e9, True)
    env = gym.make("CartPole-v1")
    counts = {"steps": 0, "evaluations": 0}

    def eval_genomes(genomes, config):
        for _, genome in genomes:
            net = neat.nn.FeedForwardNetwork.create(genome, config)
            observation, _ = env.reset(seed=seed + counts["evaluations"])
            total, done = 0.0, False
            while not done:
                output = net.activate(observation.tolist())
                observation, reward, terminated, truncated, _ = env.step(int(np.argmax(output)))
                total += reward
                counts["steps"] += 1
                done = terminated or truncated
            genome.fitness = total
            counts["evaluations"] += 1

    started = time.perf_counter()
    neat.Population(config).run(eval_genomes, generations)
    return counts["steps"], counts["evaluations"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 XOR seeds and 15 CartPole generations")
    parser.add_argument("--seeds", type=int, default=None, help="XOR seeds (default 10; --quick: 3)")
    parser.add_argument("--generations", type=int, default=None, help="CartPole generations (default 30; --quick: 15)")
    args = parser.parse_args()
    seeds = range(args.seeds or (3 if args.quick else 10))
    generations = args.generations or (15 if args.quick else 30)  # fewer: start-up costs swamp the rate
    rows = []
    xor = {}
    for name, fn in (("ours", xor_ours), ("neat-python", xor_theirs)):
        results = []
        for seed in seeds:
            results.append(fn(seed))
            print(f"XOR {name} seed {seed}: generations {results[-1][0]}, {results[-1][1]:.2f} s", flush=True)
        solved = [g for g, _ in results if g is not None]
        xor[name] = (
            np.mean(solved) if solved else float("nan"),
            np.mean([t for _, t in results]),
            len(solved) / len(results),
        )
    rows += [
        ("XOR generations to 3.9 (mean, solved runs)", xor["ours"][0], xor["neat-python"][0]),
        ("XOR wall time per run (s)", xor["ours"][1], xor["neat-python"][1]),
        ("XOR success rate", xor["ours"][2], xor["neat-python"][2]),
    ]
    cart = {}
    for name, fn in (("ours", cartpole_ours), ("neat-python", cartpole_theirs)):
        steps, evaluations, wall = fn(generations, 1)
        cart[name] = (steps / wall, evaluations / wall)
        print(f"CartPole {name}: {generations} generations, {steps} steps, {wall:.2f} s", flush=True)
    rows += [
        ("CartPole env steps/s", cart["ours"][0], cart["neat-python"][0]),
        ("CartPole genome evaluations/s", cart["ours"][1], cart["neat-python"][1]),
    ]
    print(f"\n{'measure':<45} {'ours':>12} {'neat-python':>12} {'ours/theirs':>12}")
    for label, ours, theirs in rows:
        ratio = f"{ours / theirs:>12.2f}" if theirs else f"{'-':>12}"  # neat-python solved none, say
        print(f"{label:<45} {ours:>12.2f} {theirs:>12.2f} {ratio}")


if __name__ == "__main__":
    main()

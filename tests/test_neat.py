"""NEAT: genome operators on hand-built genomes, the compiled networks, speciation, determinism,
learning XOR and CartPole, checkpoints and the champion picture."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import load
from agents.evaluation import evaluate_agent
from agents.neat.config import NeatConfig
from agents.neat.genome import (
    GenePool,
    Genome,
    InnovationTracker,
    add_connection,
    add_node,
    compatibility_distance,
    crossover,
)
from agents.neat.network import PopulationNetwork, sigmoid
from agents.neat.population import Population
from agents.neat.rollout import BatchRollout, ParallelRollout
from core.config import build_config
from core.errors import SuiteError
from envs import EnvConfig
from envs.xor import XOR_INPUTS, XOR_TARGETS
from trainer.runner import train


def genome(innov, weights, enabled=None, src=None, dst=None, nodes=(0,), biases=None) -> Genome:
    n = len(innov)
    return Genome(
        node_ids=np.array(nodes, dtype=np.int64),
        biases=np.zeros(len(nodes)) if biases is None else np.array(biases, dtype=np.float64),
        innovation=np.array(innov, dtype=np.int64),
        source=np.array(src if src is not None else [-1] * n, dtype=np.int64),
        target=np.array(dst if dst is not None else [0] * n, dtype=np.int64),
        weight=np.array(weights, dtype=np.float64),
        enabled=np.ones(n, bool) if enabled is None else np.array(enabled, dtype=bool),
    )


def test_compatibility_distance_by_hand():
    a = genome([1, 2, 3, 5], [1.0, 2.0, 3.0, 0.0])
    b = genome([1, 2, 4, 6, 7, 8], [0.5, 2.5, 0.0, 0.0, 0.0, 0.0])
    # Matching 1, 2 (mean |dw| = 0.5); disjoint 3, 4, 5; excess 6, 7, 8 (beyond a's last gene 5); N = 1 (< 20 genes).
    expected = 1.0 * 3 + 1.0 * 3 + 0.4 * 0.5
    assert compatibility_distance(a, b) == pytest.approx(expected)
    assert compatibility_distance(b, a) == pytest.approx(expected)
    assert compatibility_distance(a, b, c1=2.0, c2=0.5, c3=1.0) == pytest.approx(2 * 3 + 0.5 * 3 + 0.5)
    assert GenePool([a, b]).distances(a).tolist() == pytest.approx([0.0, expected])


def test_compatibility_distance_normalises_big_genomes():
    a = genome(list(range(20)), np.zeros(20))
    b = genome(list(range(18)) + [30, 31, 32], np.ones(21))
    # 2 disjoint (18, 19), 3 excess (30..32), N = 21, 18 matching genes each |dw| = 1.
    assert compatibility_distance(a, b) == pytest.approx(5 / 21 + 0.4)


def test_crossover_aligns_on_innovation_numbers():
    fitter = genome([1, 2, 3, 5], [1.0, 1.0, 1.0, 1.0], enabled=[True, False, True, True])
    other = genome([1, 2, 4, 6, 7], [-1.0, -1.0, -1.0, -1.0, -1.0])
    rng = np.random.default_rng(0)
    children = [crossover(fitter, other, rng) for _ in range(400)]
    for child in children:  # structure comes from the fitter parent only
        assert child.innovation.tolist() == [1, 2, 3, 5]
        assert child.weight[2] == 1.0 and child.weight[3] == 1.0  # disjoint/excess genes: fitter's
        assert child.enabled[2] and child.enabled[3]
    matching = np.array([c.weight[0] for c in children])
    assert 0.4 < (matching == -1.0).mean() < 0.6  # matching genes from either parent at random
    disabled = np.mean([not c.enabled[1] for c in children])
    assert 0.68 < disabled < 0.82  # disabled in a parent -> disabled with probability 0.75


def test_add_node_splits_a_connection():
    g = genome([0], [0.7], src=[-1], dst=[0])
    tracker = InnovationTracker(next_innovation=1, next_node=1)
    child = add_node(g, tracker, np.random.default_rng(0))
    assert child.node_ids.tolist() == [0, 1]
    by_innov = {
        int(i): (int(s), int(t), float(w), bool(e))
        for i, s, t, w, e in zip(
            child.innovation, child.source, child.target, child.weight, child.enabled, strict=False
        )
    }
    assert by_innov == {0: (-1, 0, 0.7, False), 1: (-1, 1, 1.0, True), 2: (1, 0, 0.7, True)}
    assert g.enabled[0]  # the parent is untouched


def test_add_connection_links_unconnected_nodes_without_cycles():
    # -1 -> 1 -> 0; the only new feed-forward links are -1 -> 0 (disabled here: re-enabled), -2 -> x.
    g = genome([0, 1, 2], [1.0, 1.0, 1.0], enabled=[False, True, True], src=[-1, -1, 1], dst=[0, 1, 0], nodes=(0, 1))
    rng = np.random.default_rng(1)
    for _ in range(30):
        tracker = InnovationTracker(next_innovation=3, next_node=2)
        child = add_connection(g, 2, tracker, rng)
        pairs = set(zip(child.source.tolist(), child.target.tolist(), strict=False))
        assert (0, 1) not in pairs  # 0 -> 1 would close the loop 1 -> 0 -> 1
        added = pairs - set(zip(g.source.tolist(), g.target.tolist(), strict=False))
        assert len(added) + int(child.enabled[0] and not g.enabled[0]) == 1
        for s, t in added:
            assert s == -2 and t in (0, 1)
            assert child.innovation.max() == 3


def test_same_mutation_in_a_generation_gets_the_same_innovation():
    tracker = InnovationTracker(next_innovation=1, next_node=1)
    a = add_node(genome([0], [0.5]), tracker, np.random.default_rng(0))
    b = add_node(genome([0], [-2.0]), tracker, np.random.default_rng(1))
    assert a.innovation.tolist() == b.innovation.tolist() == [0, 1, 2]
    assert a.node_ids.tolist() == b.node_ids.tolist() == [0, 1]
    assert tracker.connection(-2, 1) == tracker.connection(-2, 1) == 3
    tracker.start_generation()
    c = add_node(genome([0], [0.5]), tracker, np.random.default_rng(0))
    assert c.innovation.tolist() == [0, 4, 5] and c.node_ids.tolist() == [0, 2]


def test_compiled_network_matches_a_hand_computation():
    # inputs -1, -2; hidden 1; output 0. h = s(0.5 x1 - x2 + 0.1); y = s(2 h + 0.3 x1 - 0.2); -2 -> 0 disabled.
    g = genome(
        [0, 1, 2, 3, 4],
        [0.3, 9.0, 0.5, -1.0, 2.0],
        enabled=[True, False, True, True, True],
        src=[-1, -2, -1, -2, 1],
        dst=[0, 0, 1, 1, 0],
        nodes=(0, 1),
        biases=(-0.2, 0.1),
    )
    x = np.array([[0.4, -0.7], [1.0, 2.0]])
    h = sigmoid(0.5 * x[:, 0] - 1.0 * x[:, 1] + 0.1)
    y = sigmoid(2.0 * h + 0.3 * x[:, 0] - 0.2)
    assert sigmoid(np.array(0.0)) == pytest.approx(0.5)
    assert sigmoid(np.array(1.0)) == pytest.approx(1 / (1 + np.exp(-4.9)))
    net = PopulationNetwork([g], n_inputs=2, n_outputs=1, batch=2)
    np.testing.assert_allclose(net.activate(x)[:, 0], y)
    # Stacked with other genomes, each genome still computes its own function.
    other = genome([0, 1], [1.0, 1.0], src=[-1, -2], dst=[0, 0])
    stacked = PopulationNetwork([other, g, other], n_inputs=2, n_outputs=1, batch=2)
    out = stacked.activate(np.concatenate([x, x, x])).reshape(3, 2)
    np.testing.assert_allclose(out[1], y)
    np.testing.assert_allclose(out[0], sigmoid(x.sum(axis=1)))


def test_recurrent_network_carries_node_values_between_steps():
    # Output 0 has a self-loop of weight 1 and reads -1 with weight 2: y_t = s(2 x_t + y_{t-1}).
    g = genome([0, 1], [2.0, 1.0], src=[-1, 0], dst=[0, 0])
    net = PopulationNetwork([g], n_inputs=1, n_outputs=1, recurrent=True)
    y1 = net.activate(np.array([[0.3]]))[0, 0]
    y2 = net.activate(np.array([[0.3]]))[0, 0]
    assert y1 == pytest.approx(sigmoid(np.array(0.6)))
    assert y2 == pytest.approx(sigmoid(np.array(0.6 + y1)))
    net.reset()
    assert net.activate(np.array([[0.3]]))[0, 0] == pytest.approx(y1)


def xor_fitness(population: Population) -> tuple[np.ndarray, bool]:
    net = PopulationNetwork(population.genomes, 2, 1, batch=4)
    out = net.activate(np.tile(XOR_INPUTS, (len(population.genomes), 1))).reshape(-1, 4)
    solved = ((out > 0.5) == (XOR_TARGETS > 0.5)).all(axis=1)
    return 4.0 - ((out - XOR_TARGETS) ** 2).sum(axis=1), bool(solved.any())


def test_same_seed_same_evolution():
    def evolve(seed: int) -> list[np.ndarray]:
        pop = Population(NeatConfig(add_node_rate=0.2, add_connection_rate=0.3), 2, 1, np.random.default_rng(seed))
        for _ in range(5):
            pop.tell(xor_fitness(pop)[0])
        return [a for g in pop.genomes for a in g.arrays()]

    first, again, other = evolve(3), evolve(3), evolve(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=False))
    assert len(first) != len(other) or not all(np.array_equal(a, b) for a, b in zip(first, other, strict=False))


def test_population_size_and_species_stay_sane():
    pop = Population(NeatConfig(add_node_rate=0.3, add_connection_rate=0.5), 3, 2, np.random.default_rng(0))
    for _ in range(6):
        pop.tell(pop.rng.random(len(pop.genomes)))
        assert len(pop.genomes) == 150
        assert sorted(i for s in pop.species for i in s.members) == list(range(150))


@pytest.mark.slow
def test_xor_is_solved_in_few_generations():
    generations = []
    for seed in range(20):
        pop = Population(NeatConfig(), 2, 1, np.random.default_rng(seed))
        for gen in range(1, 151):
            fitness, solved = xor_fitness(pop)
            if solved:
                generations.append(gen)
                break
            pop.tell(fitness)
    assert len(generations) >= 19  # measured: 20/20 seeds, 27 generations on average
    assert np.mean(generations) <= 40


@pytest.mark.slow
def test_worker_processes_give_the_same_fitness_as_one_process():
    pop = Population(NeatConfig(add_node_rate=0.5, add_connection_rate=0.5), 2, 1, np.random.default_rng(0))
    for _ in range(3):
        pop.tell(xor_fitness(pop)[0])
    serial = BatchRollout(EnvConfig("XOR-v0"), len(pop.genomes), 1, seed=0)
    parallel = ParallelRollout(EnvConfig("XOR-v0"), len(pop.genomes), 1, seed=0, recurrent=False, workers=2)
    try:
        expected, (returns, lengths) = serial.evaluate(pop.genomes, seed=1), parallel.evaluate(pop.genomes, seed=1)
    finally:
        serial.close()
        parallel.close()
    np.testing.assert_allclose(returns, expected[0])  # XOR is deterministic: env seeds do not matter
    np.testing.assert_allclose(returns[:, 0], xor_fitness(pop)[0])
    assert (lengths == 4).all()


@pytest.mark.slow
def test_cartpole_champion_balances(runs_dir):
    result = train("neat", env_id="CartPole-v1", steps=1_000_000, seed=2, runs_dir=runs_dir, progress=False)
    assert result.global_step < 1_000_000  # stopped at the reward threshold
    returns = evaluate_agent(result.agent_object, EnvConfig("CartPole-v1"), episodes=20, seed=5)
    assert returns.mean() >= 475
    assert (result.run_dir / "champion.png").stat().st_size > 1000
    # On demand, from the saved run: the same champion drawn again.
    picture = runs_dir / "brain.png"
    drawn = subprocess.run(
        [sys.executable, "-m", "agents.neat.draw", str(result.run_dir), "--out", str(picture)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drawn.returncode == 0, drawn.stderr
    assert picture.stat().st_size > 1000


def test_drawing_refuses_a_run_of_another_agent(runs_dir):
    result = train("qtable", env_id="FrozenLake-v1", steps=200, runs_dir=runs_dir, progress=False)
    drawn = subprocess.run(
        [sys.executable, "-m", "agents.neat.draw", str(result.run_dir)], capture_output=True, text=True, timeout=120
    )
    assert drawn.returncode == 2
    assert (
        drawn.stderr.strip() == f"error: {result.run_dir} holds the qtable agent; only neat runs have a network to draw"
    )


def test_champion_score_comes_from_the_replays_when_given():
    pop = Population(NeatConfig(population_size=10), 2, 1, np.random.default_rng(0))
    fitness = np.arange(10.0)
    assert pop.tell(fitness, best_score=4.5)
    assert pop.champion.fitness == 4.5  # the replayed score, not the fitness 9
    first = pop.champion
    # A fitter genome whose replays score lower does not replace the champion ...
    assert not pop.tell(fitness + 100, best_score=4.0)
    assert pop.champion is first
    # ... and without replays its fitness is the score.
    assert pop.tell(fitness + 100)
    assert pop.champion.fitness == 109.0


@pytest.mark.slow
def test_champion_replays_gate_the_stop(runs_dir):
    overrides = {"champion_episodes": "10", "population_size": "50"}
    result = train(
        "neat", env_id="CartPole-v1", steps=2_000_000, seed=3, runs_dir=runs_dir, progress=False, overrides=overrides
    )
    agent = result.agent_object
    assert result.global_step < 2_000_000 and agent.champion.fitness >= 475  # stopped on the replayed score
    assert evaluate_agent(agent, EnvConfig("CartPole-v1"), episodes=20, seed=5).mean() >= 475


def test_xor_training_checkpoint_round_trip_and_resume(runs_dir):
    first = train("neat", env_id="XOR-v0", steps=2_400, seed=1, runs_dir=runs_dir, name="xor", progress=False)
    agent = first.agent_object
    assert agent.population.generation == 4  # 600 steps per generation of 150 genomes
    assert (first.run_dir / "champion.png").exists()
    state = torch.load(first.run_dir / "checkpoints" / "latest.pt", weights_only=True)["agent_state"]
    loaded = load(first.run_dir)
    assert loaded.population.generation == 4
    assert loaded.champion.fitness == agent.champion.fitness
    for obs in XOR_INPUTS:
        assert np.array_equal(loaded.act(obs)[0], agent.act(obs)[0])
    assert len(state["population"]["genomes"]) == 150

    resumed = train("neat", steps=4_800, resume=first.run_dir, progress=False)
    assert resumed.agent_object.population.generation == 8
    straight = train("neat", env_id="XOR-v0", steps=4_800, seed=1, runs_dir=runs_dir, name="straight", progress=False)
    assert resumed.episode_returns == straight.episode_returns[600:]  # resume continues the same evolution


def test_xor_agent_reaches_its_threshold(runs_dir):
    result = train("neat", env_id="XOR-v0", steps=200_000, seed=3, runs_dir=runs_dir, progress=False)
    assert result.global_step < 200_000
    returns = evaluate_agent(result.agent_object, EnvConfig("XOR-v0"), episodes=1)
    assert returns[0] >= 3.9
    outputs = [float(result.agent_object.act(x)[0][0]) for x in XOR_INPUTS]
    assert [o > 0.5 for o in outputs] == [False, True, True, False]


# Ray backend ----------------------------------------------------------------------------------
def test_core_never_imports_ray():
    code = "import sys, agents.neat.agent, agents.a3c.agent; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    with pytest.raises(SuiteError):
        build_config(NeatConfig, {"ray_address": "10.0.0.1:6379"})  # needs backend=ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-node local Ray cluster with one CPU per node, joined by this process; shared by the Ray tests."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from agents.ray_cluster import RUNTIME_ENV

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, runtime_env=RUNTIME_ENV, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_ray_backend_solves_cartpole_on_two_nodes(ray_cluster, runs_dir):
    overrides = {"backend": "ray", "num_workers": 2}
    result = train("neat", env_id="CartPole-v1", steps=1_000_000, seed=2, runs_dir=runs_dir, overrides=overrides)
    assert result.global_step < 1_000_000  # stopped at the reward threshold
    agent = result.agent_object
    assert len(set(agent.worker_nodes)) == 2, agent.worker_nodes  # one actor per node
    assert evaluate_agent(agent, EnvConfig("CartPole-v1"), episodes=5, seed=5).mean() >= 475


@pytest.mark.slow
def test_ray_backend_gives_the_process_pool_fitnesses(ray_cluster):
    from agents.neat.ray_rollout import RayRollout

    config = NeatConfig(population_size=20, add_node_rate=0.5, add_connection_rate=0.5)
    pop = Population(config, 3, 1, np.random.default_rng(0))
    for _ in range(2):
        pop.tell(pop.rng.random(len(pop.genomes)))
    env = EnvConfig("Pendulum-v1")  # no numpy vectorization: separate envs, real-valued returns
    pool = ParallelRollout(env, 20, 1, seed=0, recurrent=False, workers=2)
    cluster = RayRollout(env, 20, 1, seed=0, recurrent=False, workers=2)
    share = BatchRollout(env, 10, 1, seed=0)
    try:
        expected, (returns, lengths) = pool.evaluate(pop.genomes, seed=11), cluster.evaluate(pop.genomes, seed=11)
        second_share = share.evaluate(pop.genomes[10:], seed=11 + 7919)
    finally:
        pool.close()
        cluster.close()
        share.close()
    np.testing.assert_array_equal(returns, expected[0])
    np.testing.assert_array_equal(lengths, expected[1])
    np.testing.assert_array_equal(returns[10:], second_share[0])
    assert len(np.unique(returns)) > 10  # the genomes really play differently
    assert len(set(cluster.nodes)) == 2


def _wait_until_dead(ray, actor, seconds: float = 60) -> None:
    """`ray.kill` only sends the request: a call made right after it was once still answered (CI), so
    wait until the actor refuses calls before testing what the rollout makes of a dead actor."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.node.remote(), timeout=seconds)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    pytest.fail("the killed ray actor still answers calls")


@pytest.mark.slow
def test_ray_actor_failures_are_one_line_errors(ray_cluster):
    import ray

    from agents.neat.ray_rollout import RayRollout

    rollout = RayRollout(EnvConfig("XOR-v0"), 4, 1, seed=0, recurrent=False, workers=2)
    try:
        with pytest.raises(SuiteError, match="^neat ray actor 0 failed to evaluate its share: AttributeError"):
            rollout.evaluate([None] * 4, seed=0)  # the actor raises
        ray.kill(rollout.actors[1])
        _wait_until_dead(ray, rollout.actors[1])
        with pytest.raises(SuiteError, match="neat ray actor 1 failed") as dead:
            rollout.evaluate(Population(NeatConfig(population_size=4), 2, 1, np.random.default_rng(0)).genomes, 0)
        assert "\n" not in str(dead.value)
    finally:
        rollout.close()
    with pytest.raises(SuiteError, match="num_workers=3 needs 3 CPUs"):
        RayRollout(EnvConfig("XOR-v0"), 4, 1, seed=0, recurrent=False, workers=3)

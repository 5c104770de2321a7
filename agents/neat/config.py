"""NEAT hyperparameters. Defaults follow Stanley & Miikkulainen (2002), section 4.1, except where a
comment names neat-python's example configs as the source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import ConfigError


@dataclass(frozen=True)
class NeatConfig:
    population_size: int = 150
    """Genomes per generation (paper: 150)."""
    episodes_per_genome: int = 2
    """Episodes each genome plays per generation; its fitness is their mean return."""
    fitness_threshold: float | None = None
    """Stop when the champion's score reaches this; None: the env's registered reward_threshold (none: never)."""
    champion_episodes: int = 0
    """Fresh episodes a generation's fittest genome replays before it may become the champion; their mean
    is its score (0: its fitness is). Fitness over a few episodes flatters lucky genomes on noisy envs."""
    num_workers: int = 0
    """Processes playing the genomes of envs gymnasium cannot vectorize (0: one per core; 1: in-process);
    with backend=ray, Ray actors for every env (0: one per CPU of the cluster)."""
    backend: Literal["local", "ray"] = "local"
    """`local`: this process, or worker processes on this machine; `ray`: Ray actors on any node."""
    ray_address: str = ""
    """Ray cluster to join with backend=ray (empty: $RAY_ADDRESS, else a local Ray started for the run)."""
    recurrent: bool = False
    """Allow recurrent connections (node values carry over between steps) instead of a feed-forward net."""
    compatibility_threshold: float = 3.0
    """Species boundary delta_t in the compatibility distance (paper: 3.0)."""
    c1: float = 1.0
    """Weight of excess genes in the compatibility distance (paper: 1.0)."""
    c2: float = 1.0
    """Weight of disjoint genes in the compatibility distance (paper: 1.0)."""
    c3: float = 0.4
    """Weight of the mean weight difference of matching genes (paper: 0.4)."""
    max_stagnation: int = 15
    """Generations without improvement after which a species is removed (paper: 15)."""
    species_kept: int = 2
    """The best species are never removed for stagnation (neat-python's species_elitism: 2)."""
    elitism_min_species_size: int = 5
    """A species with at least this many members passes its champion on unchanged (paper: more than five)."""
    survival_threshold: float = 0.2
    """Fraction of each species (its fittest) allowed to reproduce (neat-python: 0.2)."""
    crossover_rate: float = 0.75
    """Fraction of offspring made by crossover; the rest are mutated clones (paper: 25% without crossover)."""
    interspecies_mating_rate: float = 0.001
    """Probability that the second parent comes from any species (paper: 0.001)."""
    disabled_stays_disabled: float = 0.75
    """Probability that a gene disabled in either parent is disabled in the child (paper: 0.75)."""
    weight_mutation_rate: float = 0.8
    """Probability that a child's weights and biases are mutated (paper: 0.8)."""
    weight_perturb_power: float = 0.5
    """Standard deviation of a weight perturbation (neat-python: weight_mutate_power 0.5)."""
    weight_replace_rate: float = 0.1
    """Probability that a mutated weight is drawn anew instead of perturbed (paper: 0.1)."""
    weight_limit: float = 30.0
    """Weights and biases are clipped to +-this (neat-python: 30)."""
    add_node_rate: float = 0.03
    """Probability of the add-node mutation per child (paper: 0.03)."""
    add_connection_rate: float = 0.05
    """Probability of the add-connection mutation per child (paper: 0.05 for small populations)."""
    toggle_enabled_rate: float = 0.01
    """Probability of flipping one gene's enabled flag per child."""

    def validate(self) -> None:
        if self.population_size < 2:
            raise ConfigError("population_size must be at least 2")
        if self.episodes_per_genome < 1 or self.champion_episodes < 0:
            raise ConfigError("episodes_per_genome must be at least 1 and champion_episodes at least 0")
        if self.num_workers < 0:
            raise ConfigError("num_workers must be 0 (one per core) or more")
        if self.ray_address and self.backend != "ray":
            raise ConfigError("ray_address needs backend=ray")
        if self.compatibility_threshold <= 0:
            raise ConfigError("compatibility_threshold must be positive")
        rates = (
            "survival_threshold",
            "crossover_rate",
            "interspecies_mating_rate",
            "disabled_stays_disabled",
            "weight_mutation_rate",
            "weight_replace_rate",
            "add_node_rate",
            "add_connection_rate",
            "toggle_enabled_rate",
        )
        for name in rates:
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1]")

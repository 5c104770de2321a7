"""`python train.py ...` from the repository: the same command as `gym-agents-train` (gym_agents/train.py)."""

from gym_agents.train import main

if __name__ == "__main__":
    main()

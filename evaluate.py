"""`python evaluate.py ...` from the repository: the same command as `gym-agents-evaluate` (gym_agents/evaluate.py)."""

from gym_agents.evaluate import main

if __name__ == "__main__":
    main()

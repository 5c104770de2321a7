"""`python compare.py ...` from the repository: the same command as `gym-agents-compare` (gym_agents/compare.py)."""

from gym_agents.compare import main

if __name__ == "__main__":
    main()

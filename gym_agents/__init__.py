"""The command lines of the suite (`gym-agents-train`, `gym-agents-evaluate`, `gym-agents-compare`, or
`python train.py` ... from the repository). The Python interface is `agents.make` / `agents.load`."""

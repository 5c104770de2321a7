"""The ground floor every other package stands on: user-facing errors, machine resources, seeding,
typed configs, the checkpoint format and the TensorBoard run log. It imports none of `envs`, `agents`,
`trainer` or the command lines."""

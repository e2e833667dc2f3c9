"""Settings of tiny Dreamer runs shared by the tests: small networks, short sequences, no waiting."""

TINY = [
    "--dreamer.world_model.deter", "32", "--dreamer.world_model.hidden", "32",
    "--dreamer.world_model.units", "32", "--dreamer.world_model.stoch", "4",
    "--dreamer.world_model.classes", "4", "--dreamer.world_model.depth", "4",
    "--dreamer.actor.units", "32", "--dreamer.critic.units", "32",
    "--replay.batch", "4", "--replay.length", "16", "--dreamer.train_ratio", "32",
    "--dreamer.prefill", "100", "--dreamer.eval_episodes", "2", "--dreamer.eval_every", "0",
    "--env.parallel", "serial", "--log.progress", "false",
]  # fmt: skip

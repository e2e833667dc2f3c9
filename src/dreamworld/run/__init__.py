"""Running an algorithm: data collection, the environment driver, logging, checkpoints and seeding.

The modules are imported where they are used (``from dreamworld.run.logger import Logger``); this
package imports none of them, so importing it loads neither torch nor TensorBoard.
"""

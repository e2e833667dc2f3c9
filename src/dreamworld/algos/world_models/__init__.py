"""World Models (Ha & Schmidhuber 2018): collect -> train-vae -> train-mdnrnn -> train-controller -> test."""

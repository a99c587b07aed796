"""VideoChat-R1.5's perception loop: prompts, reply parsing and the rounds over one video."""

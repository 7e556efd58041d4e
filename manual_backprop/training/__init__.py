"""``train``: seed 004's demo, trained with the hand-derived gradients (:mod:`.train`), and its pictures (:mod:`.plots`)."""

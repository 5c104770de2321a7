"""NEAT neuroevolution: genomes, speciation, batched networks and the suite agent (`neat`)."""

"""Neural-network building blocks: modules, layers, recurrent layers, losses and utilities."""

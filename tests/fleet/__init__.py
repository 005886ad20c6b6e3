"""Many instances, one gateway: three `prismgate serve` processes behind nginx."""

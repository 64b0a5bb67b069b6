"""Own classes on real fixed-camera footage: public benchmark sequences, split in time, every head measured."""

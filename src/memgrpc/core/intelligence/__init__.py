"""What memgrpc derives from conversations: the processing steps ProcessSession runs."""

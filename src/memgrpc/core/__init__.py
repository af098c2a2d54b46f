"""Domain logic in plain Python types; knows nothing of gRPC or LanceDB SQL."""

"""LanceDB storage: schemas, tables, single writers, indexes, maintenance, filters."""

{
  "targets": [
    {
      "target_name": "file_copy",
      "sources": ["file-copy.c", "inflate-clusters.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}

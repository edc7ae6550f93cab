{
  "targets": [
    {
      "target_name": "file_copy",
      "sources": ["file-copy.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}

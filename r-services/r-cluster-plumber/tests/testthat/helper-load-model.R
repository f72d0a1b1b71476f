# The service code is plain R files, not a package: load common's code and the
# service's, as the launcher does.
service_dir <- normalizePath(file.path("..", ".."))
for (code_dir in file.path(c(file.path(service_dir, "..", "common"), service_dir), "R")) {
  for (code_file in sort(list.files(code_dir, "\\.R$", full.names = TRUE))) {
    source(code_file, local = TRUE)
  }
}

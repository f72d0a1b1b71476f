# The service's code as the launcher loads it: its R/*.R in their own
# environment whose parent is the rservicecommon namespace. Its functions are
# copied here (they keep that environment) so tests call them by name;
# common's exports come from library().
library(rservicecommon)
service_dir <- normalizePath(file.path("..", ".."))
service_code <- load_service_code(file.path(service_dir, "R"))
list2env(as.list(service_code, all.names = TRUE), environment())

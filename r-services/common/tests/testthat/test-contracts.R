# Each service's routes (plumber.R annotations) and its schemas.json agree, so
# /openapi.json documents every endpoint with request and response bodies.

services_root <- normalizePath(file.path("..", "..", ".."))

for (service in c("r-brms-plumber", "r-forecast-plumber", "r-cluster-plumber")) {
  test_that(paste(service, "documents every route in schemas.json"), {
    lines <- readLines(file.path(services_root, service, "plumber.R"))
    routes <- sub("^#\\* @(get|post|delete) ", "", grep("^#\\* @(get|post|delete) /", lines, value = TRUE))
    contracts <- jsonlite::fromJSON(file.path(services_root, service, "schemas.json"), simplifyVector = FALSE)
    expect_setequal(names(contracts$endpoints), routes)
    common_schemas_file <- system.file("schemas.json", package = "rservicecommon", mustWork = TRUE)
    common_schemas <- jsonlite::fromJSON(common_schemas_file)$schemas
    schemas <- c(names(contracts$schemas), names(common_schemas))
    schema_names <- function(method) unlist(method[c("request", "response", "job_result")])
    used <- unlist(lapply(contracts$endpoints, function(methods) lapply(methods, schema_names)))
    expect_true(all(used %in% schemas), info = paste(setdiff(used, schemas), collapse = ", "))
    refs <- regmatches(
      readLines(file.path(services_root, service, "schemas.json")),
      regexpr("#/components/schemas/[A-Za-z]+", readLines(file.path(services_root, service, "schemas.json")))
    )
    expect_true(all(sub(".*/", "", refs) %in% schemas))
  })
}

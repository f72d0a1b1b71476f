# HTTP contracts as JSON Schemas, in one place per service:
# `<service>/schemas.json` holds the request and response bodies of its
# endpoints, `common/inst/schemas.json` (installed with the package) what every service shares (errors, jobs,
# /health). `/openapi.json` is built from them; the pytest suite runs
# schemathesis against each service with this document (0 server errors, 0
# responses that break it), which keeps schemas and validators in step.
#
# schemas.json:
#   {"schemas": {"<Name>": <JSON Schema>, ...},
#    "endpoints": {"/x/fit": {"post": {"summary": "...", "request": "<Name>", "job_result": "<Name>"}},
#                  "/x/predict": {"post": {"summary": "...", "request": "<Name>", "response": "<Name>"}}}}
# A `job_result` endpoint answers with a job (202/200) whose `result` is that
# schema; a `response` endpoint answers synchronously.

read_schema_file <- function(path) {
  if (!file.exists(path)) {
    return(list(schemas = list(), endpoints = list()))
  }
  jsonlite::fromJSON(path, simplifyVector = FALSE)
}

read_contracts <- function(service_dir) {
  common <- read_schema_file(system.file("schemas.json", package = "rservicecommon", mustWork = TRUE))
  service <- read_schema_file(file.path(service_dir, "schemas.json"))
  schemas <- c(common$schemas, service$schemas)
  job_results <- unlist(lapply(service$endpoints, function(methods) lapply(methods, `[[`, "job_result")))
  if (length(job_results) > 0) {
    schemas$Job$properties$result <- list(anyOf = lapply(unname(job_results), schema_ref))
  }
  list(schemas = schemas, endpoints = service$endpoints)
}

schema_ref <- function(name) list(`$ref` = paste0("#/components/schemas/", name))

json_content <- function(name) list(`application/json` = list(schema = schema_ref(name)))

json_response <- function(description, name, headers = NULL, links = NULL) {
  response <- list(description = description, content = json_content(name))
  if (!is.null(headers)) response$headers <- headers
  if (!is.null(links)) response$links <- links
  response
}

# The accepted job leads to its status (lets a fuzzer poll real jobs).
job_links <- list(
  getJob = list(operationId = "getJob", parameters = list(job_id = "$response.body#/job_id")),
  cancelJob = list(operationId = "cancelJob", parameters = list(job_id = "$response.body#/job_id"))
)

error_response <- function(description, headers = NULL) json_response(description, "Error", headers)

retry_after_header <- list(`Retry-After` = list(
  description = "seconds to wait before retrying",
  schema = list(type = "integer")
))

location_header <- list(Location = list(
  description = "/jobs/<job_id>",
  schema = list(type = "string")
))

# Errors any authenticated endpoint may answer.
common_errors <- function() {
  list(
    `400` = error_response("invalid input; the message starts with the field"),
    `401` = error_response("missing or invalid bearer token"),
    `413` = error_response("request body too large")
  )
}

endpoint_operation <- function(spec) {
  operation <- list(
    summary = spec$summary %||% "",
    requestBody = list(required = TRUE, content = json_content(spec$request))
  )
  if (!is.null(spec$job_result)) {
    operation$parameters <- list(list(
      name = "Idempotency-Key", `in` = "header", required = FALSE,
      description = "a second submit with the same key returns the same job",
      schema = list(type = "string", minLength = 1, maxLength = 255, pattern = "^[!-~]+$")
    ))
    operation$responses <- c(
      list(
        `200` = json_response(
          "the job already submitted with this Idempotency-Key", "JobAccepted", location_header, job_links
        ),
        `202` = json_response("accepted; poll Location", "JobAccepted", location_header, job_links)
      ),
      common_errors(),
      list(
        `422` = error_response("Idempotency-Key already used for another body"),
        `429` = error_response("job queue full", retry_after_header)
      )
    )
  } else {
    operation$responses <- c(
      list(`200` = json_response("the answer", spec$response)),
      common_errors(),
      list(`404` = error_response("unknown model"))
    )
  }
  operation
}

contract_paths <- function(contracts) {
  open <- list()
  job_id_parameter <- list(list(
    name = "job_id", `in` = "path", required = TRUE,
    schema = list(type = "string")
  ))
  job_responses <- list(
    `200` = json_response("the job", "Job"),
    `401` = error_response("missing or invalid bearer token"),
    `404` = error_response("unknown job")
  )
  paths <- list(
    `/health` = list(get = list(
      summary = "liveness and settings (open)",
      security = open,
      responses = list(`200` = json_response("the service is up", "Health"))
    )),
    `/openapi.json` = list(get = list(
      summary = "this document (open)",
      security = open,
      responses = list(`200` = list(
        description = "OpenAPI document",
        content = list(`application/json` = list(schema = list(type = "object")))
      ))
    )),
    `/jobs/{job_id}` = list(
      get = list(operationId = "getJob", summary = "status, progress and (once succeeded) the result of a fit job",
                 parameters = job_id_parameter, responses = job_responses),
      delete = list(operationId = "cancelJob", summary = "cancel a fit job",
                    parameters = job_id_parameter, responses = job_responses)
    )
  )
  for (path in names(contracts$endpoints)) {
    methods <- contracts$endpoints[[path]]
    paths[[path]] <- lapply(methods, endpoint_operation)
  }
  paths
}

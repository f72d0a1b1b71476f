# Shortcuts for the commands in README.md.
.PHONY: demo test ui down

demo:  ## bootstrap the local stack and run every DAG end to end
	bash scripts/demo.sh

test:  ## the whole test suite (what CI runs)
	bash scripts/test.sh

ui:  ## Airflow UI on http://localhost:$${LA_UI_PORT:-8080}
	bash scripts/ui.sh

down:  ## stop the R services and the PostgreSQL cluster
	bash scripts/stack.sh down

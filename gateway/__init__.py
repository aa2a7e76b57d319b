"""The single public REST API: auth, routing to the services, merged OpenAPI, webhook ingress."""

// The gateway's Caddy: the standard modules, the rate limiter, and this folder's edge module
// (problem details and bearer-token verification). scripts/install-stack.sh and the Dockerfile
// both build this file with go.mod and go.sum as they are, so the versions pinned there are
// the ones that run.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-ratelimit"

	_ "service-template/gateway/edge"
)

func main() {
	caddycmd.Main()
}

// CoreDNS with only the plugins the local cluster needs: cluster.local names from the
// apiserver, health and readiness. There is deliberately no `forward`: pods resolve cluster
// names only, and no query ever leaves this host.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// Order matters: it is the order in which plugins see a query.
var directives = []string{"bind", "errors", "health", "ready", "cache", "loadbalance", "kubernetes", "template"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }

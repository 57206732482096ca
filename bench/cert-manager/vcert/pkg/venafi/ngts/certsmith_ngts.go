// Package ngts is laid over github.com/Venafi/vcert/v5 v5.12.3 by hack/build-cert-manager:
// the connector cert-manager v1.21's Venafi issuer names, added in vcert v5.13 (which the
// Go module proxy does not serve). vcert.NewClient never returns it in this copy.
package ngts

import (
	"errors"

	"github.com/Venafi/vcert/v5/pkg/endpoint"
)

// Connector satisfies endpoint.Connector by embedding it (cert-manager type-asserts to it).
type Connector struct {
	endpoint.Connector
}

// Authenticate always fails: this copy has no NGTS client.
func (*Connector) Authenticate(*endpoint.Authentication) error {
	return errors.New("vcert NGTS connector is not available in this build")
}

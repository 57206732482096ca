// Laid over github.com/Venafi/vcert/v5 v5.12.3 by hack/build-cert-manager: the connector
// type cert-manager v1.21's Venafi issuer names, added in vcert v5.13 (which the Go module
// proxy does not serve). The bench never configures a Venafi issuer.
package endpoint

// ConnectorTypeNGTS names vcert v5.13's NGTS connector; no connector of this copy has it.
const ConnectorTypeNGTS ConnectorType = -1

package edge

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

func init() {
	caddy.RegisterModule(BearerJWT{})
	httpcaddyfile.RegisterHandlerDirective("bearer_jwt", parseBearerJWT)
	// Before the rate limiter and the proxy, as basic_auth is.
	httpcaddyfile.RegisterDirectiveOrder("bearer_jwt", httpcaddyfile.Before, "basic_auth")
}

// BearerJWT lets a request through only with `Authorization: Bearer <JWT>` whose signature
// verifies against the configured key and whose `exp` is in the future (RFC 7519; a token
// without `exp` is refused). Anything else is a 401 with `WWW-Authenticate: Bearer`
// (RFC 6750), answered as a problem by the `problems` handler. The token's `sub` becomes
// {http.auth.user.id}, the claim the access log and the upstream can rely on.
//
// Only stateless checks: no introspection call per request, no key fetching (JWKS) at run
// time; rotate the key by editing the config and reloading.
type BearerJWT struct {
	// PEM file of the issuer's public key (RSA, ECDSA or Ed25519); or
	KeyFile string `json:"key_file,omitempty"`
	// a shared HMAC secret (HS256/384/512), at least 32 bytes.
	Secret string `json:"secret,omitempty"`
	// Required `iss` and `aud` values, when set.
	Issuer   string `json:"issuer,omitempty"`
	Audience string `json:"audience,omitempty"`
	// Clock skew tolerated on exp and nbf; 30 s by default.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	key     any
	methods []string
	parser  *jwt.Parser
}

// CaddyModule returns the Caddy module information.
func (BearerJWT) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bearer_jwt",
		New: func() caddy.Module { return new(BearerJWT) },
	}
}

// Provision loads the key and fixes the accepted algorithms to the key's kind, so a token
// cannot choose its own (no "none", no HMAC with a public key as the secret).
func (b *BearerJWT) Provision(caddy.Context) error {
	switch {
	case b.KeyFile != "" && b.Secret != "":
		return errors.New("bearer_jwt: key_file or secret, not both")
	case b.Secret != "":
		if len(b.Secret) < 32 {
			return errors.New("bearer_jwt: the secret must be at least 32 bytes")
		}
		b.key, b.methods = []byte(b.Secret), []string{"HS256", "HS384", "HS512"}
	case b.KeyFile != "":
		pem, err := os.ReadFile(b.KeyFile)
		if err != nil {
			return fmt.Errorf("bearer_jwt: %w", err)
		}
		if b.key, b.methods, err = publicKey(pem); err != nil {
			return fmt.Errorf("bearer_jwt: %s: %w", b.KeyFile, err)
		}
	default:
		return errors.New("bearer_jwt: no key: set key_file or secret (the shipped Caddyfile " +
			"takes the secret from GATEWAY_JWT_SECRET)")
	}
	leeway := time.Duration(b.Leeway)
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	options := []jwt.ParserOption{
		jwt.WithValidMethods(b.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
	}
	if b.Issuer != "" {
		options = append(options, jwt.WithIssuer(b.Issuer))
	}
	if b.Audience != "" {
		options = append(options, jwt.WithAudience(b.Audience))
	}
	b.parser = jwt.NewParser(options...)
	return nil
}

func publicKey(pem []byte) (any, []string, error) {
	if key, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return key, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	}
	if key, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
		return key, []string{"ES256", "ES384", "ES512"}, nil
	}
	if key, err := jwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		return key, []string{"EdDSA"}, nil
	}
	return nil, nil, errors.New("not an RSA, ECDSA or Ed25519 public key in PEM")
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (b *BearerJWT) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		return caddyhttp.Error(http.StatusUnauthorized, errors.New("no bearer token"))
	}
	claims := jwt.RegisteredClaims{}
	if _, err := b.parser.ParseWithClaims(token, &claims, b.keyFor); err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
		return caddyhttp.Error(http.StatusUnauthorized, err)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", claims.Subject)
	}
	return next.ServeHTTP(w, r)
}

func (b *BearerJWT) keyFor(*jwt.Token) (any, error) {
	return b.key, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	bearer_jwt {
//	    key_file <pem> | secret <hmac secret>
//	    [issuer <iss>]
//	    [audience <aud>]
//	    [leeway <duration>]
//	}
func (b *BearerJWT) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		field := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		value := d.Val()
		switch field {
		case "key_file":
			b.KeyFile = value
		case "secret":
			b.Secret = value
		case "issuer":
			b.Issuer = value
		case "audience":
			b.Audience = value
		case "leeway":
			leeway, err := caddy.ParseDuration(value)
			if err != nil {
				return d.Errf("leeway: %v", err)
			}
			b.Leeway = caddy.Duration(leeway)
		default:
			return d.Errf("unknown bearer_jwt option %q", field)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

func parseBearerJWT(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	b := new(BearerJWT)
	err := b.UnmarshalCaddyfile(h.Dispenser)
	return b, err
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*BearerJWT)(nil)
	_ caddyhttp.MiddlewareHandler = (*BearerJWT)(nil)
	_ caddyfile.Unmarshaler       = (*BearerJWT)(nil)
)

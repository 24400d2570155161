// oauth4webapi as a strict resource server: RFC 8414 discovery at ISSUER_URL,
// then validateJwtAccessToken with the discovered metadata, as it is (RFC 9068
// §4: the token's iss must be the metadata's issuer). Prints the claims, or
// {"error": code} and exits 1. Run from extension/ (its node_modules) on
// stdin: `node --input-type=module < this file` (py/tests/test_strict_rfc9068.py).
import * as oauth from "oauth4webapi";

const issuer = new URL(process.env.ISSUER_URL);
const options = { [oauth.allowInsecureRequests]: true }; // http on loopback
try {
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...options }),
  );
  const request = new Request(new URL("/api/extension/usage", issuer), {
    headers: { authorization: `Bearer ${process.env.ACCESS_TOKEN}` },
  });
  const claims = await oauth.validateJwtAccessToken(as, request, process.env.AUDIENCE, options);
  console.log(JSON.stringify({ issuer: as.issuer, claims }));
} catch (error) {
  console.log(JSON.stringify({ error: error.code ?? String(error), message: String(error) }));
  process.exit(1);
}

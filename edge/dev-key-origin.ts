/**
 * The development key (`sssd-dev-key` unless SSSD_DEV_API_KEY says otherwise)
 * is in the README: with CORS open to every origin, any web page a developer
 * visits while `npm start` runs could call their local edge with it (use it,
 * read drafts of the demo user's cache through `sssd_sources`, delete that
 * cache). So a browser's request with it is served only from a page on this
 * machine (the demo page, at 127.0.0.1; a front end's dev server), by its
 * origin's host alone: not "the edge's own origin", since the URL the edge
 * sees is built from the Host header, which a page whose name was re-pointed
 * at 127.0.0.1 (DNS rebinding) sets to its own. Clients that send no Origin
 * (curl, SDKs outside a browser) are unaffected, and real keys are served
 * from any origin as before.
 */
import { ApiError } from './api-error';

/** A 403 for the dev key used from a page of another origin; nothing otherwise. */
export function checkDevKeyOrigin(origin: string | undefined): void {
  if (origin === undefined || loopbackOrigin(origin)) return;
  throw new ApiError(
    403,
    // Every host loopbackOrigin takes, not some of them (review h141).
    `The development API key is accepted only from web pages whose address is localhost, *.localhost, 127.x.x.x, [::1], [::ffff:127.x.x.x] or 0.0.0.0: every site knows it. ${
      origin === 'null'
        ? 'This page sent Origin: null (opened from a file, or a sandboxed frame), which any site can send: open it at http://localhost:PORT or http://127.0.0.1:PORT'
        : 'Open the page at http://localhost:PORT or http://127.0.0.1:PORT (not this machine\'s network address)'
    }, or use a key of your own (\`node bin/sssd.mjs key create --local\` for this stack; docs/edge.md, "Keys and limits").`,
    'invalid_request_error',
    'origin_not_allowed',
  );
}

function loopbackOrigin(origin: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    // `null` (a sandboxed frame, a file): anyone's page can be one.
    return false;
  }
  // Browsers resolve these to this machine whatever DNS says; the URL parser has normalised the forms (0x7f.1, upper
  // case, 0, IPv4-mapped [::ffff:127.0.0.1] as [::ffff:7f00:1]). 0.0.0.0 is this machine where a browser opens it at all.
  const host = url.hostname;
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || host === '0.0.0.0' || /^127(\.\d{1,3}){3}$/.test(host) || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(host);
}

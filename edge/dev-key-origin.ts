/**
 * The development key (`sssd-dev-key` unless SSSD_DEV_API_KEY says otherwise)
 * is in the README: with CORS open to every origin, any web page a developer
 * visits while `npm start` runs could call their local edge with it (use it,
 * read drafts of the demo user's cache through `sssd_sources`, delete that
 * cache). So a browser's request with it is served only from this edge's own
 * origin (the demo page) or a page on this machine (a front end's dev
 * server); clients that send no Origin (curl, SDKs outside a browser) are
 * unaffected, and real keys are served from any origin as before.
 */
import { ApiError } from './api-error';

/** A 403 for the dev key used from a page of another origin; nothing otherwise. */
export function checkDevKeyOrigin(origin: string | undefined, requestUrl: string): void {
  if (origin === undefined || allowedOrigin(origin, requestUrl)) return;
  throw new ApiError(
    403,
    'The development API key is not accepted from web pages of other sites: every site knows it. Use a key of your own (docs/deploy.md), or serve the page from this machine.',
    'invalid_request_error',
    'origin_not_allowed',
  );
}

function allowedOrigin(origin: string, requestUrl: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    // `null` (a sandboxed frame, a file): anyone's page can be one.
    return false;
  }
  if (url.origin === new URL(requestUrl).origin) return true;
  const host = url.hostname;
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

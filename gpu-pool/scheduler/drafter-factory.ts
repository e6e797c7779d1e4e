/**
 * Builds a generation's drafter from its request: the speculation method, the
 * edge trie shipped with it (base64), and the global datastore when the request
 * opts in (`useDatastore`).
 */
import type { GenerateRequest } from '../../shared/protocol';
import type { DatastoreLike } from '../../shared/drafting/datastore-source';
import { RequestDrafter } from '../../shared/drafting/request-drafter';
import { AdmissionError } from './admission-error';
import { decodeBase64 } from './base64';
import type { Drafter } from './generation';

export function drafterFactory(datastore: DatastoreLike | null): (request: GenerateRequest) => Drafter | null {
  return (request) => {
    if (request.speculation === 'off') return null;
    let edgeTrie: Uint8Array | undefined;
    if (request.trie !== undefined && request.speculation === 'sssd') {
      const bytes = decodeBase64(request.trie);
      if (!bytes) throw new AdmissionError('bad_request', 'trie: not valid base64');
      edgeTrie = bytes;
    }
    return new RequestDrafter({
      method: request.speculation,
      promptIds: request.promptIds,
      edgeTrie,
      datastore: request.useDatastore && datastore ? datastore : undefined,
    });
  };
}

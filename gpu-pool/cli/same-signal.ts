/**
 * Stop signals closer together than this are one signal delivered twice, not
 * a second one on purpose: a terminal's ^C reaches the whole process group,
 * GNU timeout signals the process and then its group, and the relaunch in
 * bin/sssd.mjs forwards the signal too. That copy can come a few hundred ms
 * late on a loaded machine (CI on 2 cores: over 250 ms), and a person's
 * deliberate second ^C rarely comes within a second of the first. The pool
 * (`sssd pool`) and the launcher (`sssd up`) both go by it.
 */
export const SAME_SIGNAL_MS = 1000;

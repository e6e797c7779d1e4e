/**
 * The provider the suites' pools and runners use unless a test names one:
 * SSSD_EXECUTION_PROVIDER, as the pool reads it (a GPU host runs the suites
 * with it set; scripts/gpu-check.sh), else the CPU.
 */
export const suiteProvider: string = process.env.SSSD_EXECUTION_PROVIDER || 'cpu';

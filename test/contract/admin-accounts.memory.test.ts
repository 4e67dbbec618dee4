// Runs the AdminAccounts contract against the memory adapter.
import { MemoryAdminAccounts } from '../../src/admin/memory.accounts.ts';
import { adminAccountsContract } from './admin-accounts.contract.ts';

adminAccountsContract('memory', async (fake, options) => {
  const accounts = new MemoryAdminAccounts({ clock: fake.clock, ...options });
  // one process: every caller shares the instance
  return { accounts, replica: async () => accounts, close: async () => {} };
});

/** Demo step: what `dsk status` says of the home at the end. */
import { homeStatus } from '../../app/status.js';
import type { DemoStep } from './context.js';

export const statusStep: DemoStep = {
  title: 'Status',
  command: 'dsk status',
  async run(d) {
    const st = await homeStatus(d.h);
    d.say(`   backend ${st.backend} (${st.fragments?.threshold}-of-${st.fragments?.shares}), keys ${Object.entries(st.keys).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ')}, audit ${st.audit.rows} rows`);
    d.summary.status = st;
  },
};

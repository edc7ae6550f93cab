export interface Qcow2Info { format: 'qcow2' }
export async function inspectQcow2(): Promise<Qcow2Info> { throw new Error('todo'); }

/** An upload the client has to send differently (not a form, a form without its `file` part): a 400. */
export class BadUploadRequest extends Error {}

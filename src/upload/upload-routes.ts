/**
 * The upload endpoints of CDI's upload server (SPEC §5.3) and what each one means. CDI's upload
 * proxy calls the v1beta1 paths; the v1alpha1 ones are kept as aliases, as CDI does.
 */
export interface UploadRoute {
  /** Answer once the body is received, and keep processing after the response. */
  async: boolean;
  /** The body is a multipart/form-data form whose `file` part is the image. */
  form: boolean;
  /** Content type archive: a tar extracted into the destination's directory. */
  archive: boolean;
}

export const HEALTHZ_PATH = '/healthz';

const ENDPOINTS: Record<string, UploadRoute> = {
  upload: { async: false, form: false, archive: false },
  'upload-async': { async: true, form: false, archive: false },
  'upload-archive': { async: false, form: false, archive: true },
  'upload-form': { async: false, form: true, archive: false },
  'upload-form-async': { async: true, form: true, archive: false },
};

const ROUTES = new Map<string, UploadRoute>();
for (const version of ['v1beta1', 'v1alpha1']) {
  for (const [name, route] of Object.entries(ENDPOINTS)) ROUTES.set(`/${version}/${name}`, route);
}

/** The route for a request target (query string ignored), or undefined for anything else. */
export function uploadRoute(url: string | undefined): UploadRoute | undefined {
  const pathname = (url ?? '').split('?')[0]!;
  return ROUTES.get(pathname);
}

-- The frame extractor's tables. Apply to your Supabase project (SQL editor, or
-- `supabase db push`); the local stack (stack.py) applies this same file.

create table if not exists public.videos (
    id            bigint generated always as identity primary key,
    code          text        not null,
    platform      text        not null,
    is_downloaded boolean     not null default false,
    is_extracted  boolean     not null default false,
    frame_count   integer     not null default 0,
    extracted_at  timestamptz          default null,
    created_at    timestamptz not null default now(),
    constraint videos_platform_code_key unique (platform, code)
);

-- `python3 test.py bulk` asks for videos downloaded but not extracted.
create index if not exists videos_pending_idx
    on public.videos (platform, code) where is_downloaded and not is_extracted;

create table if not exists public.extraction_errors (
    id         bigint generated always as identity primary key,
    code       text        not null,
    platform   text        not null,
    stage      text        not null,
    error      text        not null,
    message_id text                 default null,
    created_at timestamptz not null default now()
);

create index if not exists extraction_errors_video_idx
    on public.extraction_errors (platform, code, created_at desc);

-- Row-level security on, and no policy: the public `anon` and `authenticated` keys see
-- nothing. The service reads and writes with the service_role key, which bypasses RLS.
alter table public.videos enable row level security;
alter table public.extraction_errors enable row level security;

revoke all on public.videos, public.extraction_errors from anon, authenticated;
grant select, insert, update on public.videos to service_role;
grant select, insert on public.extraction_errors to service_role;

// The claims mapper of the interop tests' provider, in Kratos's idiom: an e-mail address only
// when the provider says it is verified (and then it is marked verified), the name if given.
local claims = { email_verified: false } + std.extVar('claims');
local verified = 'email' in claims && claims.email_verified;

{
  identity: {
    traits: {
      [if verified then 'email' else null]: claims.email,
      [if 'given_name' in claims then 'name' else null]: {
        first: claims.given_name,
        [if 'family_name' in claims then 'last' else null]: claims.family_name,
      },
    },
    verified_addresses: if verified then [{ value: claims.email, via: 'email' }] else [],
  },
}

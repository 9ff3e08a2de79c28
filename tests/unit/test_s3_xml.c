/* The bounded XML reading of S3's answers: elements found by name, entities
 * and character references decoded, sizes bounded, repeated elements. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "s3/xml.h"

static const char list[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>"
    "<IsTruncated>true</IsTruncated>"
    "<Contents><Key>p/a&amp;b &lt;1&gt;</Key><Size>12</Size>"
    "<ETag>&quot;abc&quot;</ETag></Contents>"
    "<Contents>\n <Key>p/caf&#233;&#x2F;x</Key><Size>0</Size></Contents>"
    "<NextContinuationToken>p/caf\xc3\xa9/x</NextContinuationToken>"
    "<Empty/></ListBucketResult>";

static void
test_list_page(void)
{
	char out[64];
	const char *inner;
	size_t ilen, pos = 0, len = sizeof(list) - 1;

	CHECK_INT(s3_xml_text(list, len, "IsTruncated", out, sizeof(out)), 1);
	CHECK_STR(out, "true");
	CHECK_INT(s3_xml_text(list, len, "NextContinuationToken", out, sizeof(out)), 1);
	CHECK_STR(out, "p/caf\xc3\xa9/x");
	CHECK_INT(s3_xml_next(list, len, "Contents", &pos, &inner, &ilen), 1);
	CHECK_INT(s3_xml_text(inner, ilen, "Key", out, sizeof(out)), 1);
	CHECK_STR(out, "p/a&b <1>");
	CHECK_INT(s3_xml_text(inner, ilen, "ETag", out, sizeof(out)), 1);
	CHECK_STR(out, "\"abc\"");
	CHECK_INT(s3_xml_next(list, len, "Contents", &pos, &inner, &ilen), 1);
	CHECK_INT(s3_xml_text(inner, ilen, "Key", out, sizeof(out)), 1);
	CHECK_STR(out, "p/caf\xc3\xa9/x");
	CHECK_INT(s3_xml_text(inner, ilen, "ETag", out, sizeof(out)), 0);
	CHECK_STR(out, "");
	CHECK_INT(s3_xml_next(list, len, "Contents", &pos, &inner, &ilen), 0);
	/* <Empty/> found and empty; a name that is a prefix of another is not it */
	CHECK_INT(s3_xml_text(list, len, "Empty", out, sizeof(out)), 1);
	CHECK_STR(out, "");
	CHECK_INT(s3_xml_text(list, len, "Key", out, sizeof(out)), 1);
	CHECK_INT(s3_xml_text(list, len, "KeyC", out, sizeof(out)), 0);
	CHECK_INT(s3_xml_text(list, len, "KeyCount", out, sizeof(out)), 1);
	CHECK_STR(out, "2");
}

static void
test_bounds(void)
{
	char small[4];
	const char *err = "<Error><Code>SignatureDoesNotMatch</Code><Message>x</Message>";

	CHECK_INT(s3_xml_text(err, strlen(err), "Code", small, sizeof(small)), -1);
	CHECK_INT((int)strlen(small) < 4, 1);
	/* unterminated element, truncated document */
	CHECK_INT(s3_xml_text(err, 20, "Code", small, sizeof(small)), 0);
	CHECK_INT(s3_xml_text("<Code>abc", 9, "Code", small, sizeof(small)), 0);
	CHECK_INT(s3_xml_text("<Code", 5, "Code", small, sizeof(small)), 0);
	/* a bad character reference is kept as text, not decoded */
	char out[32];
	CHECK_INT(s3_xml_text("<A>&#0;&bogus;&#xD800;</A>", 26, "A", out, sizeof(out)), 1);
	CHECK_STR(out, "&#0;&bogus;&#xD800;");
}

static void
test_escape(void)
{
	char *s = s3_xml_escape("a<b>&\"c'");
	CHECK_STR(s, "a&lt;b&gt;&amp;&quot;c&apos;");
	free(s);
}

int
main(void)
{
	RUN(test_list_page);
	RUN(test_bounds);
	RUN(test_escape);
	DONE();
}
